#!/bin/bash
# Container healthcheck: GET http://127.0.0.1:PORT/health with bash alone (the image has
# no curl or wget). Exits 0 when the answer's status is 2xx, non-zero otherwise; the
# container runtime's own timeout bounds a server that does not answer.
#
#   logdist-health PORT [PATH]      (PATH defaults to /health)
set -euo pipefail

port=${1:?usage: logdist-health PORT [PATH]}
path=${2:-/health}

# bash opens the TCP connection itself through its /dev/tcp redirection.
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$path" >&3
# The status line, e.g. "HTTP/1.1 200 OK".
read -r -t 5 status <&3
[[ $status =~ ^HTTP/1\.[01]\ 2[0-9][0-9] ]]
