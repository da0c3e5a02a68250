#!/usr/bin/python3
"""kopsy's on-instance helper (stdlib only: the stock image has python3 but no AWS CLI).

Subcommands:
  get RELKEY DEST [--mode 0600]  copy <stateStore>/RELKEY from S3 to DEST (atomic rename)
  put RELKEY SRC                 write SRC to <stateStore>/RELKEY (the token refresh uses it)
  imds PATH                      print an instance metadata value (IMDSv2)
  status PHASE [--error MSG]     record the bootstrap phase in /var/lib/kopsy/bootstrap.json
  addons DIR                     fetch every addon the config pins into DIR, each checked against
                                 its sha256 (a byte different: refused); prints the files in order
  etcd-...                       etcd snapshots, restore and members (kopsy_etcd.py beside this file)

Credentials come from the instance role through IMDSv2; requests are signed with SigV4. The S3
endpoint is the config's "s3Endpoint" (path-style, for S3-compatible stores) or real S3.
Never prints object contents: they are keys and tokens.
"""
import argparse
import datetime
import hashlib
import hmac
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from xml.etree import ElementTree

CONFIG = "/etc/kopsy/bootstrap-config.json"
STATUS = "/var/lib/kopsy/bootstrap.json"
IMDS = os.environ.get("KOPSY_IMDS_ENDPOINT", "http://169.254.169.254")  # overridable for tests only


def log(msg):
    sys.stderr.write("kopsy-helper: %s\n" % msg)


_IMDS_TOKEN = []  # one IMDSv2 session token per helper run


def imds(path):
    if not _IMDS_TOKEN:
        req = urllib.request.Request(IMDS + "/latest/api/token", method="PUT",
                                     headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"})
        with urllib.request.urlopen(req, timeout=5) as r:
            _IMDS_TOKEN.append(r.read().decode())
    req = urllib.request.Request(IMDS + "/latest/" + path, headers={"X-aws-ec2-metadata-token": _IMDS_TOKEN[0]})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read().decode()


def credentials():
    role = imds("meta-data/iam/security-credentials/").strip().splitlines()[0]
    c = json.loads(imds("meta-data/iam/security-credentials/" + role))
    return c["AccessKeyId"], c["SecretAccessKey"], c.get("Token", "")


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _canonical_query(query):
    """SigV4's canonical query string: pairs sorted, each part URI-encoded once."""
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    return "&".join("%s=%s" % (urllib.parse.quote(k, safe="-_.~"), urllib.parse.quote(v, safe="-_.~"))
                    for k, v in sorted(pairs))


def sign(method, url, region, creds, payload_hash, now, extra=None, service="s3"):
    """SigV4 headers for one request (the service's documented algorithm, nothing S3-specific skipped).
    ``extra`` headers (x-amz-server-side-encryption, If-None-Match) are signed with the rest."""
    access, secret, token = creds
    parts = urllib.parse.urlsplit(url)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    headers = {"host": parts.netloc, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
    headers.update({k.lower(): v for k, v in (extra or {}).items()})
    if token:
        headers["x-amz-security-token"] = token
    names = sorted(headers)
    canonical = "\n".join([
        method,
        parts.path or "/",  # object_url already URI-encoded it once, as SigV4 for S3 wants
        _canonical_query(parts.query),
        "".join("%s:%s\n" % (n, headers[n].strip()) for n in names),
        ";".join(names),
        payload_hash,
    ])
    scope = "%s/%s/%s/aws4_request" % (day, region, service)
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret).encode(), day), region), service), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        access, scope, ";".join(names), signature)
    del headers["host"]
    return headers


def object_url(cfg, region, relkey):
    store = urllib.parse.urlsplit(cfg["stateStore"])
    if store.scheme != "s3":
        raise SystemExit("kopsy-helper: state store %s is not s3:// (instances cannot read it)" % cfg["stateStore"])
    bucket = store.netloc
    key = "/".join(p for p in (store.path.strip("/"), relkey) if p)
    endpoint = (cfg.get("s3Endpoint") or "").rstrip("/")
    if relkey is None:  # the bucket itself (to list it)
        if endpoint:
            return "%s/%s" % (endpoint, bucket)
        return "https://s3.%s.amazonaws.com/%s" % (region, bucket) if "." in bucket else "https://%s.s3.%s.amazonaws.com/" % (bucket, region)
    if endpoint:
        return "%s/%s/%s" % (endpoint, bucket, urllib.parse.quote(key))
    if "." in bucket:  # virtual-hosted TLS names cannot carry dots
        return "https://s3.%s.amazonaws.com/%s/%s" % (region, bucket, urllib.parse.quote(key))
    return "https://%s.s3.%s.amazonaws.com/%s" % (bucket, region, urllib.parse.quote(key))


def _send(cfg, method, relkey, body, region, creds, extra=None, query=""):
    url = object_url(cfg, region, relkey) + ("?" + query if query else "")
    headers = sign(method, url, region, creds, hashlib.sha256(body).hexdigest(),
                   datetime.datetime.now(datetime.timezone.utc), extra)
    if method == "PUT":  # else urllib sends a form content type, which servers may parse away
        headers["Content-Type"] = "application/octet-stream"
    req = urllib.request.Request(url, data=body if method == "PUT" else None, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()


def s3_request(cfg, method, relkey, body=b"", deadline=300.0, extra=None, query=""):
    """One S3 call, retried with backoff until ``deadline`` seconds (fresh instance roles take a moment).
    ``relkey`` None with a ``query`` lists the bucket (ListObjectsV2)."""
    region = cfg.get("s3Region") or imds("meta-data/placement/region").strip()
    end = time.monotonic() + deadline
    delay = 2.0
    while True:
        try:
            creds = credentials()
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError) as e:
            err = "no instance role credentials from IMDS yet (%s)" % e
        else:
            try:
                return _send(cfg, method, relkey, body, region, creds, extra, query)
            except urllib.error.HTTPError as e:
                moved = e.headers.get("x-amz-bucket-region")
                if moved and moved != region:
                    log("bucket is in %s, not %s: retrying there" % (moved, region))
                    region = moved
                    continue
                err = "HTTP %s for %s %s" % (e.code, method, relkey)
                if e.code == 404:  # S3 is strongly consistent: a missing object will not appear by waiting
                    msg = "kopsy-helper: %s: %s/%s is not in the state store" % (err, cfg["stateStore"], relkey)
                    raise SystemExit(msg) from None
                if e.code == 403:
                    err += " (access denied: the instance role may not %s this object, or is not active yet)" % (
                        "read" if method == "GET" else "write")
            except (urllib.error.URLError, OSError) as e:
                err = "%s for %s %s" % (e, method, relkey)
        if time.monotonic() + delay > end:
            raise SystemExit("kopsy-helper: giving up: " + err)
        log(err + "; retrying in %.0fs" % delay)
        time.sleep(delay)
        delay = min(delay * 2, 30.0)


def list_keys(cfg, relprefix):
    """Every key under <stateStore>/RELPREFIX, relative to the cluster's prefix (ListObjectsV2, paged)."""
    base = urllib.parse.urlsplit(cfg["stateStore"]).path.strip("/")
    prefix = "/".join(p for p in (base, relprefix) if p)
    keys, token = [], ""
    while True:
        query = urllib.parse.urlencode([("list-type", "2"), ("prefix", prefix)] + ([("continuation-token", token)] if token else []))
        root = ElementTree.fromstring(s3_request(cfg, "GET", None, query=query))
        ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
        for item in root.iter(ns + "Contents"):
            key = item.findtext(ns + "Key") or ""
            keys.append(key[len(base) + 1:] if base else key)
        token = root.findtext(ns + "NextContinuationToken") or ""
        if root.findtext(ns + "IsTruncated") != "true" or not token:
            return keys


def write_atomic(path, data, mode):
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".kopsy-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


# --- addons: manifests from the state store, verified before anything applies them -------------

def addon_files(cfg, directory, fetch):
    """Fetch each pinned addon (``cfg["addons"]``: relkey -> sha256 hex) with ``fetch(relkey)``,
    refuse any whose bytes do not hash to its pin, and write the rest to DIR as NN-<name>.yaml.
    Nothing is written unless every addon verifies, so a half-verified set is never applied."""
    pins = cfg.get("addons") or {}
    verified = []
    for relkey in sorted(pins):
        data = fetch(relkey)
        got = hashlib.sha256(data).hexdigest()
        if got != pins[relkey]:
            raise SystemExit("kopsy-helper: %s/%s has sha256 %s, not the %s this user-data pins; refusing it"
                             % (cfg["stateStore"], relkey, got, pins[relkey]))
        verified.append((relkey, data))
    paths = []
    for n, (relkey, data) in enumerate(verified):
        path = os.path.join(directory, "%02d-%s.yaml" % (n, relkey.split("/")[-2] if "/" in relkey else relkey))
        write_atomic(path, data, 0o600)
        paths.append(path)
    return paths


def main(argv=None):
    p = argparse.ArgumentParser(prog="kopsy-helper")
    p.add_argument("--config", default=CONFIG)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("get")
    g.add_argument("relkey")
    g.add_argument("dest")
    g.add_argument("--mode", default="0600")
    u = sub.add_parser("put")
    u.add_argument("relkey")
    u.add_argument("src")
    m = sub.add_parser("imds")
    m.add_argument("path")
    s = sub.add_parser("status")
    s.add_argument("phase")
    s.add_argument("--error", default="")
    s.add_argument("--file", default=STATUS)
    ad = sub.add_parser("addons")
    ad.add_argument("dir")
    argv = sys.argv[1:] if argv is None else argv
    rest = argv[2:] if argv[:1] == ["--config"] else argv
    if rest and rest[0].startswith("etcd-"):  # control planes only: the module is installed beside this file there
        sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
        import kopsy_etcd
        return kopsy_etcd.main(argv, sys.modules[__name__])
    a = p.parse_args(argv)
    if a.cmd == "imds":
        sys.stdout.write(imds("meta-data/" + a.path).strip() + "\n")
    elif a.cmd == "status":
        doc = {"phase": a.phase, "error": a.error or None,
               "updated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        write_atomic(a.file, (json.dumps(doc, sort_keys=True) + "\n").encode(), 0o644)
    else:
        with open(a.config) as f:
            cfg = json.load(f)
        if a.cmd == "addons":
            for path in addon_files(cfg, a.dir, lambda relkey: s3_request(cfg, "GET", relkey)):
                sys.stdout.write(path + "\n")
            log("verified and wrote %d addons to %s" % (len(cfg.get("addons") or {}), a.dir))
        elif a.cmd == "get":
            write_atomic(a.dest, s3_request(cfg, "GET", a.relkey), int(a.mode, 8))
            log("fetched %s -> %s" % (a.relkey, a.dest))
        else:
            with open(a.src, "rb") as f:
                s3_request(cfg, "PUT", a.relkey, f.read())
            log("stored %s" % a.relkey)


if __name__ == "__main__":
    sys.exit(main())
