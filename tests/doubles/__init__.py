"""TEST DOUBLES shared by every test area (and bench/): what stands in for a cluster instance.

- ``sshd.SshdDouble``: a real OpenSSH sshd on its own loopback address, answering exec requests
  from a JSON file through ``answers.py`` (its ForceCommand). Stands in for an instance's SSH
  daemon wherever kopsy's SSH layer is driven (validate, jump hosts, day-2 commands).
- ``kubectl``: ``node_list`` / ``pod_list``, the JSON ``kubectl get nodes|pods -o json`` prints,
  built from a few plain values per node. Stands in for a control plane's kubectl answers.
- ``httpserver.serve_on_loopback``: a real HTTP server on a free loopback port for a ``with``
  block. Stands in for services read over HTTP (EC2's IMDS, a package repository).

The sandbox (``kopsy/sandbox/``) has its own stand-ins, derived from the emulated cloud; these are
for tests that set each answer themselves. Only 127.0.0.0/8 is ever used.
"""
