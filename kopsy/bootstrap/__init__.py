"""Instance bootstrap: user-data rendered from the jinja2 templates in ``cloudinit/``.

Public contract (used by the cloud layer and the sandbox):

- ``render_user_data(cluster, ig, *, api_endpoint, ca_cert_hash, state_store_url) -> bytes``:
  the user-data bytes for one instance group (gzip-compressed #cloud-config; the caller
  base64-encodes them for EC2). Optional keywords: ``s3_endpoint``, ``s3_region``,
  ``init_control_plane``.
- ``parse_user_data(data) -> BootstrapConfig``: the non-secret bootstrap settings carried in
  user-data, read back (gzip and multipart MIME handled), for checks that compare an
  instance's user-data with the cluster.
"""

from kopsy.bootstrap.config import PHASES, BootstrapConfig, UserDataInvalid, parse_user_data
from kopsy.bootstrap.render import (
    RenderError,
    bootstrap_config,
    init_control_plane_group,
    kubeadm_api_version,
    render_cloud_config,
    render_user_data,
)

__all__ = [
    "PHASES",
    "BootstrapConfig",
    "RenderError",
    "UserDataInvalid",
    "bootstrap_config",
    "init_control_plane_group",
    "kubeadm_api_version",
    "parse_user_data",
    "render_cloud_config",
    "render_user_data",
]
