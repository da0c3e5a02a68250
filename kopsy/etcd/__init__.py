"""etcd durability from the operator's side: publishing the on-instance etcd code, reading the
snapshots in the state store, and the over-SSH commands (snapshot, member removal, restore).
What runs on the instance is ``cloudinit/kopsy-etcd.py`` (docs/disaster-recovery.md)."""
