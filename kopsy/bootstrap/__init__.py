"""Instance bootstrap: user-data rendered from the jinja2 templates in ``cloudinit/``.

Public contract (used by the cloud layer and the sandbox):

- ``render_user_data(cluster, ig, *, api_endpoint, ca_cert_hash, state_store_url) -> bytes``:
  the user-data bytes for one instance group (the caller base64-encodes them for EC2).
- ``parse_user_data(data) -> BootstrapConfig``: the non-secret bootstrap settings carried in
  user-data, read back (gzip and multipart MIME handled), for checks that compare an
  instance's user-data with the cluster.
"""

from kopsy.bootstrap.render import BootstrapConfig, parse_user_data, render_user_data

__all__ = ["BootstrapConfig", "parse_user_data", "render_user_data"]
