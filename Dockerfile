# syntax=docker/dockerfile:1
# Build: a static binary (the embedded store's SQLite is pure Go, so CGO stays off), with the
# same flags as `make build`.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/offboard ./cmd/offboard

# Run: distroless static, non-root; /data holds the embedded store and the secret key file.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/offboard /usr/local/bin/offboard
USER nonroot:nonroot
VOLUME ["/data"]
ENV OFFBOARD_DATA=/data OFFBOARD_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/offboard"]
CMD ["serve"]
