Load balancers support sticky cookies compatible with Traefik's, and active health checks that take servers out of and back into the rotation; failover services follow their main service's health.
The stripPrefix, stripPrefixRegex, addPrefix, replacePath, replacePathRegex, redirectScheme, redirectRegex and headers middlewares work, and entrypoint redirections generate their redirect router.
