#!/bin/sh
# The lab's stand-in for Dify's docker/ssrf_proxy/docker-entrypoint.sh (the real one fills squid.conf from its
# template, then starts squid in the foreground).
exec squid -NYC
