"""The sandbox: a LOCAL EMULATION of AWS plus SSH-reachable node stand-ins, on loopback only.

It lets a newcomer (and every end-to-end test) run create -> update -> validate -> delete with
no AWS account. Nothing else in kopsy knows it exists: kopsy reaches it through
``AWS_ENDPOINT_URL`` and an OpenSSH config file, like any other environment.

Modules, one job each:

- ``layout``: where a sandbox keeps its files (state, logs, ssh config, per-node sshd files).
- ``images``: the Ubuntu 24.04 image and SSM parameter the emulated cloud serves.
- ``motoserver``: runs moto's server with that SSM parameter present.
- ``procs``: starting and stopping processes, marked so that ``down`` can find every one.
- ``control``: ``up`` / ``down`` / ``status`` / ``env``.
- ``facts``: one batched read of the emulated cloud into a typed ``World``.
- ``rules``: the readiness rules (the ONLY place that decides whether a node is Ready and why not).
- ``answers``: the node commands validate runs over SSH, answered in their real formats.
- ``sshd``: one real OpenSSH sshd per instance, and the ssh config that maps instances to them.
- ``supervisor``: the background process that keeps sshds in step with EC2 and answers node shells.
- ``client``: how the CLI talks to the supervisor.
- ``nodeshell``: sshd's ForceCommand, a stdlib-only script playing the machine's programs.
"""

from kopsy.errors import KopsyError


class SandboxError(KopsyError):
    """The sandbox cannot start, stop or answer. Defined here, not in ``kopsy.errors``, because
    nothing in kopsy outside the sandbox may know the sandbox exists."""
