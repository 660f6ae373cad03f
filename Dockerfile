# syntax=docker/dockerfile:1
# payrail's reference binaries (examples/server, examples/worker,
# examples/opsctl) in one small image: static Go binaries on distroless,
# running as a non-root user. See docs/deploy.md.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t payrail .
#   docker run --rm -p 8080:8080 payrail                 # the API server (default)
#   docker run --rm payrail /usr/local/bin/worker        # the standalone worker
#   docker run --rm payrail /usr/local/bin/opsctl keys ls
#
# The build flags are those of .ci/build-binaries.sh, which CI runs (there is
# no Docker engine in CI): keep the two in step.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Module downloads first, cached while only sources change. The workspace
# spans several modules, so every go.mod/go.sum of go.work is copied (a test
# in infra/ checks this list against go.work).
COPY go.work go.work.sum go.mod go.sum ./
COPY bench/go.mod bench/go.sum bench/
COPY bus/kafka/go.mod bus/kafka/go.sum bus/kafka/
COPY bus/pubsub/go.mod bus/pubsub/go.sum bus/pubsub/
COPY bus/servicebus/go.mod bus/servicebus/go.sum bus/servicebus/
COPY bus/snssqs/go.mod bus/snssqs/go.sum bus/snssqs/
COPY examples/go.mod examples/go.sum examples/
COPY gateway/stripe/go.mod gateway/stripe/go.sum gateway/stripe/
COPY idempotency/dynamodb/go.mod idempotency/dynamodb/go.sum idempotency/dynamodb/
COPY idempotency/postgres/go.mod idempotency/postgres/go.sum idempotency/postgres/
COPY idempotency/redis/go.mod idempotency/redis/go.sum idempotency/redis/
COPY infra/go.mod infra/go.sum infra/
COPY internal/pgtext/go.mod internal/pgtext/go.sum internal/pgtext/
COPY internal/testkit/chaos/go.mod internal/testkit/chaos/go.sum internal/testkit/chaos/
COPY internal/testkit/otlpsink/go.mod internal/testkit/otlpsink/go.sum internal/testkit/otlpsink/
COPY observability/go.mod observability/go.sum observability/
COPY payments/postgres/go.mod payments/postgres/go.sum payments/postgres/
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
# The image compiles every driver in (payrail_full); payrail_no_<driver> tags
# in GOTAGS leave some out, e.g. --build-arg GOTAGS=payrail_no_kafka,payrail_no_pubsub,payrail_no_servicebus
# for AWS (examples/internal/drivers; sizes in docs/deploy.md).
ARG GOTAGS=
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    for cmd in server worker opsctl; do \
      CGO_ENABLED=0 go build -trimpath \
        -ldflags "-s -w -X github.com/payrail/payrail/examples/internal/app.Version=${VERSION}" \
        -tags "payrail_full${GOTAGS:+,$GOTAGS}" -o /out/$cmd ./examples/$cmd || exit 1; \
    done

# distroless/static: CA certificates, tzdata and /etc/passwd with the
# nonroot user (65532), no shell and no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/server /out/worker /out/opsctl /usr/local/bin/
USER 65532:65532
# PORT (API) and METRICS_PORT (the worker's /metrics and /healthz), on every
# interface of the container: the binaries' own default, LISTEN_HOST=127.0.0.1,
# is for development. Without PAYRAIL_ADMIN_KEYS, /admin/* then answers 403.
ENV LISTEN_HOST=0.0.0.0
EXPOSE 8080 9464
ENTRYPOINT []
CMD ["/usr/local/bin/server"]
