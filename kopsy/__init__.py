"""kopsy: a kops-like cluster provisioning tool for Kubernetes on AWS."""

__version__ = "0.1.0"
