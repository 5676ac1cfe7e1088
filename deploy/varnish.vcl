# Varnish 7.1 in front of imgproxy. docs/CDN.md says what it does and why;
# tests/test_varnish.py runs this file, with only the backend's port changed, in a real varnishd.
#
#   200                       kept for its Cache-Control (a year, immutable)
#   400 404 413 415 422       kept ERROR_TTL (10 s): long enough to absorb a herd, short
#                             enough that an upload racing its first link heals at once
#   403, 5xx                  never kept (403 and 503 say no-store; 5xx is never cacheable)
#   cache key                 the path plus `s` only: every other query parameter is dropped
#   a herd on one cold URL    one backend request (Varnish's request coalescing)
#   If-None-Match             answered 304 by Varnish from the cached object
#   PURGE <url>, BAN <prefix> from `purgers` only: drop one variant, or every URL under a
#                             prefix (BAN /v/web/ after editing the `web` preset)
#   BAN with X-Purge-Key      from `purgers` only: drop every object whose Surrogate-Key holds one
#                             of its space-separated keys (o-<16 hex>): every URL of an original
#                             (`imgproxy purge ID --cdn`); Surrogate-Key is not sent to clients
vcl 4.1;

backend imgproxy {
    .host = "127.0.0.1";
    .port = "8080";
    .connect_timeout = 2s;
    .first_byte_timeout = 60s;    # a cold render can wait for a worker (render_timeout 30 s)
    .between_bytes_timeout = 30s;
}

acl purgers {
    "127.0.0.1";
    "::1";
}

sub vcl_recv {
    if (req.method == "PURGE" || req.method == "BAN") {
        if (client.ip !~ purgers) {
            return (synth(405, "Not allowed"));
        }
        if (req.method == "BAN" && req.http.X-Purge-Key) {
            # Keys are imgproxy's surrogate keys only, so they are safe inside the regex.
            if (req.http.X-Purge-Key !~ "^o-[0-9a-f]{16}( o-[0-9a-f]{16})*$") {
                return (synth(400, "Bad X-Purge-Key"));
            }
            # Whole tokens of the object's list: (^|\s)(o-…|o-…)(\s|$), no space inside the expression.
            ban("obj.http.Surrogate-Key ~ (^|\s)(" + regsuball(req.http.X-Purge-Key, " ", "|") + ")(\s|$)");
            return (synth(200, "Banned"));
        }
        if (req.method == "BAN") {
            ban("obj.http.x-url ~ ^" + regsub(req.url, "\?.*$", ""));
            return (synth(200, "Banned"));
        }
    }
    if (req.url == "/metrics" || req.url ~ "^/metrics\?") {
        return (synth(404, "Not Found"));    # scrape imgproxy directly, not through the edge
    }
    if (req.url !~ "^/v/") {
        return (pass);    # /healthz and anything else: straight through
    }
    # Keep only `s`: links shared on social networks and in mail gain ?utm_source=... and
    # friends, and each spelling would otherwise be a cache object (and an origin request)
    # of its own. A URL without `s` keeps no query at all (imgproxy answers it 403).
    if (req.url ~ "[?&]s=") {
        set req.url = regsub(req.url, "^([^?]*)\?(?:.*&)?(s=[^&]*)(?:&.*)?$", "\1?\2");
    } else {
        set req.url = regsub(req.url, "\?.*$", "");
    }
    # Variants are public and the same for everyone: cookies must not turn them into passes.
    unset req.http.Cookie;
    unset req.http.Authorization;
    # `.auto` is negotiated by Accept (imgproxy/web/negotiate.py, answered with `Vary: Accept`):
    # reduce Accept to the one value that decides the format, so there are at most three objects.
    if (req.url ~ "\.auto(\?|$)") {
        if (req.http.Accept ~ "image/avif") {
            set req.http.Accept = "image/avif";
        } elsif (req.http.Accept ~ "image/webp") {
            set req.http.Accept = "image/webp";
        } else {
            set req.http.Accept = "image/jpeg";
        }
    }
    if (req.method == "PURGE") {
        return (purge);
    }
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);    # imgproxy answers 405
    }
    return (hash);
}

sub vcl_hash {
    hash_data(req.url);    # one backend: the Host a client used does not matter
    return (lookup);
}

sub vcl_backend_response {
    set beresp.http.x-url = bereq.url;    # for BAN; removed on delivery
    if (beresp.status == 400 || beresp.status == 404 || beresp.status == 413 ||
        beresp.status == 415 || beresp.status == 422) {
        set beresp.ttl = 10s;    # ERROR_TTL
        set beresp.grace = 0s;
        set beresp.keep = 0s;
        set beresp.http.Cache-Control = "public, max-age=10";
        return (deliver);
    }
    if (beresp.status != 200) {
        # 403 and 5xx (and anything new): never stored. Later requests for the URL go to
        # imgproxy without waiting on each other, for a short while (hit-for-miss).
        set beresp.ttl = 10s;
        set beresp.uncacheable = true;
        return (deliver);
    }
    # 200: the built-in rules, which honour Cache-Control.
}

sub vcl_deliver {
    unset resp.http.x-url;
    unset resp.http.Surrogate-Key;    # kept on the object, where bans read it
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
        # The tier is the one the first request saw at the origin, frozen into the object.
        unset resp.http.X-Imgproxy-Tier;
    } else {
        set resp.http.X-Cache = "MISS";
    }
}
