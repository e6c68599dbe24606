# Stand-in for nginx:1.27-alpine, built by scripts/container-check.sh: Debian's nginx
# (1.22) on the local bookworm base, reading /etc/nginx/conf.d/*.conf as the official
# image does, in the foreground, logging to the container's output; and wget, which
# nginx:alpine has from busybox, for the compose file's healthcheck.
ARG BASE
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx wget \
 && rm -rf /var/lib/apt/lists/* \
 && rm -f /etc/nginx/sites-enabled/default \
 && ln -sf /dev/stdout /var/log/nginx/access.log \
 && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 3000
CMD ["nginx", "-g", "daemon off;"]
