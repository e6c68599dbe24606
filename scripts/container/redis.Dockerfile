# Stand-in for redis:7, built by scripts/container-check.sh: Debian's redis-server (7.0)
# and redis-cli (the healthcheck) on the local bookworm base.
ARG BASE
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/*
# As the official image's entrypoint does for a redis-server run without a config file:
# protected mode off, so that other containers on the network may connect.
ENTRYPOINT ["sh", "-c", "if [ \"$1\" = redis-server ]; then set -- \"$@\" --protected-mode no; fi; exec \"$@\"", "redis-entrypoint"]
CMD ["redis-server"]
EXPOSE 6379
