module github.com/offboard/offboard

go 1.26.8
