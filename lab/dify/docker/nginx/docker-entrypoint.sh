#!/bin/sh
# The lab's stand-in for Dify's docker/nginx/docker-entrypoint.sh (the real one fills the templates with envsubst,
# then starts nginx): the nginx of the lab's stand-in image routes as Dify's proxy.conf does.
exec nginx -g 'daemon off;'
