"""What ``update --yes`` and ``delete --yes`` wait for, read from the calls the proxy saw at 40 ms a
call: the store calls that need not hold anything back (the read cache, the published addons and
etcd module, delete's spec read and its listing of the state) run beside other calls, and the
ones that must come first still do (nothing pins an object that is not in the store yet; nothing
is written after the lock is gone; nothing in the cloud is touched before the lock is held; no
state object goes before the final search of the cloud is in)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from reliability_support import BUCKET, CLUSTER, AwsProxy, Baseline, Call, Cloud, one_error_line

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # the real kopsy executable against moto behind the proxy


@pytest.fixture
def slow_proxy(fresh: Cloud, rel_proxy: AwsProxy) -> Iterator[AwsProxy]:
    rel_proxy.latency = 0.04  # long enough that overlapping calls cannot be told apart from luck
    rel_proxy.reset()
    yield rel_proxy
    rel_proxy.latency = 0.0


def _overlap(a: Call, b: Call) -> bool:
    return a.start < b.end and b.start < a.end


def _puts(calls: list[Call], *parts: str) -> list[Call]:
    return [c for c in calls if c.operation == "PutObject" and any(p in c.path for p in parts)]


def test_update_writes_the_cache_and_publishes_beside_the_cloud_calls(fresh: Cloud, slow_proxy: AwsProxy) -> None:
    fresh.boto("s3").delete_object(Bucket=BUCKET, Key=f"{CLUSTER}/cache/reads.json")  # a store without one: written again
    slow_proxy.reset()
    r = fresh.kopsy(["update", "cluster", CLUSTER, "--yes"])
    assert r.returncode == 0, r.stderr
    calls = slow_proxy.calls

    cache = _puts(calls, f"/{CLUSTER}/cache/reads.json")
    describes = [c for c in calls if c.service == "ec2" and c.operation.startswith("Describe")]
    assert len(cache) == 1 and describes
    assert any(_overlap(cache[0], d) for d in describes), "the read cache was written before the describes, not beside them"

    published = _puts(calls, f"/{CLUSTER}/addons/", f"/{CLUSTER}/bootstrap/kopsy_etcd.py")
    assert len(published) == 4  # three addons and the etcd module, on a fresh cluster
    creates = [c for c in calls if c.operation.startswith("Create") and c.service in ("ec2", "iam")]
    templates = [c for c in calls if c.operation in ("CreateLaunchTemplate", "CreateLaunchTemplateVersion")]
    assert templates
    assert min(t.start for t in templates) >= max(p.end for p in published), "a template was written before what it pins"
    assert any(_overlap(p, c) for p in published for c in creates), "publishing held back the first creates"

    release = [c for c in calls if c.operation == "DeleteObject" and c.path.endswith(f"/{CLUSTER}/lock")]
    assert len(release) == 1 and release[0].start >= cache[0].end, "the cache was written after the lock was released"


def test_a_denied_addon_write_leaves_every_template_alone_and_a_rerun_finishes(fresh: Cloud, rel_proxy: AwsProxy,
                                                                               baseline: Baseline) -> None:
    rel_proxy.deny_writes(f"/{CLUSTER}/addons/")  # as a bucket policy denying them would
    try:
        r = fresh.kopsy(["update", "cluster", CLUSTER, "--yes"])
    finally:
        rel_proxy.deny_writes()
    assert r.returncode == 1 and "Traceback" not in r.stderr
    errors = one_error_line(r.stderr)
    assert len(errors) == 1 and "addons/" in errors[0] and "launch templates were left as they were" in errors[0], r.stderr
    assert f"re-run 'kopsy update cluster {CLUSTER} --yes'" in errors[0]
    half = fresh.inventory().counts()
    assert "launch_template" not in half and "asg" not in half and half.get("vpc") == 1  # the rest went ahead

    again = fresh.kopsy(["update", "cluster", CLUSTER, "--yes"])
    assert again.returncode == 0, again.stderr
    whole = fresh.inventory()
    assert whole.counts() == baseline.inventory.counts() and whole.duplicates() == {}


def test_delete_takes_the_lock_beside_the_spec_read(built: Cloud, slow_proxy: AwsProxy) -> None:
    slow_proxy.reset()
    r = built.kopsy(["delete", "cluster", CLUSTER, "--yes"])
    assert r.returncode == 0, r.stderr
    calls = slow_proxy.calls
    spec = [c for c in calls if c.operation == "GetObject" and c.path.endswith(f"/{CLUSTER}/config")]
    lock = [c for c in calls if c.operation == "PutObject" and c.path.endswith(f"/{CLUSTER}/lock")]
    assert spec and lock and _overlap(spec[0], lock[0]), "the lock waited for the spec read"
    first_cloud = min(c.start for c in calls if c.service != "s3")
    assert first_cloud >= max(spec[0].end, lock[0].end)  # nothing in the cloud is touched before both
    assert built.store_objects(f"{CLUSTER}/") == {}


def test_delete_lists_the_state_beside_its_final_search_and_deletes_it_after(built: Cloud, slow_proxy: AwsProxy) -> None:
    slow_proxy.reset()
    r = built.kopsy(["delete", "cluster", CLUSTER, "--yes"])
    assert r.returncode == 0, r.stdout + r.stderr
    calls = slow_proxy.calls
    listing = [c for c in calls if c.operation == "ListObjectsV2"]
    batch = [c for c in calls if c.operation == "DeleteObjects"]
    assert len(listing) == 1 and len(batch) == 1, [c.operation for c in calls if c.service == "s3"]
    deletes = [c for c in calls if c.service != "s3" and c.operation.startswith(("Delete", "Terminate"))]
    final_search = [c for c in calls if c.service != "s3" and c.start >= max(d.end for d in deletes)]
    assert final_search, "no search of the cloud after its last delete"
    assert any(_overlap(listing[0], c) for c in final_search), "the state was listed only after the final search"
    assert listing[0].start >= max(d.end for d in deletes)  # listed once the cloud's deletes were done
    assert batch[0].start >= max(c.end for c in final_search)  # nothing of the state goes before the search is in
    assert built.store_objects(f"{CLUSTER}/") == {}


def test_a_state_listing_refused_beside_the_final_search_still_shows_what_remains(built: Cloud, rel_proxy: AwsProxy) -> None:
    """The listing made beside the final search must not hide that search's result: with a
    resource left and ListObjectsV2 refused, delete still prints the leak report and keeps the
    state, as it did when it listed only after the report."""
    ec2 = built.boto("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": f"tag:kubernetes.io/cluster/{CLUSTER}", "Values": ["owned"]}])["Vpcs"][0]["VpcId"]
    ec2.create_subnet(VpcId=vpc, CidrBlock="172.20.250.0/24")  # not the cluster's: its VPC cannot go
    rel_proxy.deny_operations("ListObjectsV2")
    try:
        r = built.kopsy(["delete", "cluster", CLUSTER, "--yes", "--wait", "5s"])
    finally:
        rel_proxy.deny_operations()
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Resources still carrying the cluster's tag" in r.stdout, r.stdout + r.stderr
    assert "the state was kept" in r.stderr, r.stderr
    assert f"{CLUSTER}/config" in built.store_objects(f"{CLUSTER}/")
