"""The addons kopsy renders into the state store: valid manifests that do what the issue asks."""

from __future__ import annotations

import pytest
import yaml

from kopsy.bootstrap.addons import CCM_IMAGES, addon_hashes, render_addons
from kopsy.spec.defaults import CreateOptions, new_cluster
from kopsy.spec.versions import SUPPORTED_MINORS

NAME = "demo.example.com"


def _docs(minor: str) -> dict[str, list[dict]]:
    cluster, _ = new_cluster(CreateOptions(name=NAME, zones=["us-east-1a"], kubernetes_version=f"{minor}.0"))
    return {key.split("/")[1]: [d for d in yaml.safe_load_all(data) if d] for key, data in render_addons(cluster).items()}


def _one(docs: list[dict], kind: str, name: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


@pytest.mark.parametrize("minor", SUPPORTED_MINORS)
def test_every_supported_minor_has_a_ccm_and_the_manifests_parse(minor: str) -> None:
    assert minor in CCM_IMAGES
    docs = _docs(minor)
    assert sorted(docs) == ["aws-cloud-controller-manager", "aws-ebs-csi-driver", "storage-gp3"]
    for items in docs.values():
        for d in items:
            assert d["apiVersion"] and d["kind"] and d["metadata"]["name"], d


def test_the_ccm_runs_on_control_planes_with_the_cluster_name_and_no_cloud_routes() -> None:
    docs = _docs(SUPPORTED_MINORS[-1])["aws-cloud-controller-manager"]
    ds = _one(docs, "DaemonSet", "aws-cloud-controller-manager")["spec"]["template"]["spec"]
    (c,) = ds["containers"]
    assert {"--cloud-provider=aws", f"--cluster-name={NAME}", "--configure-cloud-routes=false"} <= set(c["args"])
    assert ds["nodeSelector"] == {"node-role.kubernetes.io/control-plane": ""}
    assert {t["key"] for t in ds["tolerations"]} >= {"node.cloudprovider.kubernetes.io/uninitialized",
                                                       "node-role.kubernetes.io/control-plane"}
    assert ds["hostNetwork"] is True and ds["serviceAccountName"] == "cloud-controller-manager"
    role = _one(docs, "ClusterRole", "system:cloud-controller-manager")
    assert any("services/status" in r["resources"] for r in role["rules"])
    assert _one(docs, "RoleBinding", "cloud-controller-manager:apiserver-authentication-reader")["roleRef"]["name"] == \
        "extension-apiserver-authentication-reader"


def test_the_csi_driver_tags_what_it_makes_for_the_cluster() -> None:
    docs = _docs(SUPPORTED_MINORS[-1])["aws-ebs-csi-driver"]
    ctl = _one(docs, "Deployment", "ebs-csi-controller")["spec"]["template"]["spec"]
    plugin = next(c for c in ctl["containers"] if c["name"] == "ebs-plugin")
    assert f"--extra-tags=KubernetesCluster={NAME}" in plugin["args"] and f"--k8s-tag-cluster-id={NAME}" in plugin["args"]
    provisioner = next(c for c in ctl["containers"] if c["name"] == "csi-provisioner")
    assert "--extra-create-metadata" in provisioner["args"]  # the claim's name and namespace as tags
    assert ctl["nodeSelector"] == {"node-role.kubernetes.io/control-plane": ""} and ctl["hostNetwork"] is True
    assert _one(docs, "CSIDriver", "ebs.csi.aws.com")["spec"]["attachRequired"] is True
    node = _one(docs, "DaemonSet", "ebs-csi-node")["spec"]["template"]["spec"]
    assert node["tolerations"] == [{"operator": "Exists"}]
    # host ports do not collide on a control plane that runs both (controller 9809, node 9808)
    assert [p["containerPort"] for c in ctl["containers"] for p in c.get("ports", [])] == [9809]


def test_the_default_storage_class_is_encrypted_gp3_waiting_for_the_first_consumer() -> None:
    (sc,) = _docs(SUPPORTED_MINORS[-1])["storage-gp3"]
    assert sc["kind"] == "StorageClass" and sc["provisioner"] == "ebs.csi.aws.com"
    assert sc["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "true"}
    assert sc["parameters"] == {"type": "gp3", "encrypted": "true"}
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer"


def test_rendering_is_pure_so_the_plan_pins_what_update_writes() -> None:
    cluster, _ = new_cluster(CreateOptions(name=NAME, zones=["us-east-1a"]))
    assert render_addons(cluster) == render_addons(cluster)
    other, _ = new_cluster(CreateOptions(name="other.example.com", zones=["us-east-1a"]))
    assert addon_hashes(cluster).keys() == addon_hashes(other).keys()
    assert all(addon_hashes(cluster)[k] != addon_hashes(other)[k] for k in addon_hashes(cluster))  # the name is in each


def test_a_resumed_update_writes_only_what_is_missing_or_changed(tmp_path) -> None:
    """As after a run killed halfway through writing them: one addon there, one missing, one with
    other bytes. Only the last two are written, the changed one conditionally on what was read."""
    from kopsy.bootstrap.addons import stale_addons, write_addons
    from kopsy.errors import WriteConflict
    from kopsy.state import open_store
    from kopsy.state.clusters import ClusterStore

    store = ClusterStore(open_store(f"file://{tmp_path}"))
    cluster, _ = new_cluster(CreateOptions(name=NAME, zones=["us-east-1a"]))
    ccm, csi, sc = render_addons(cluster).items()
    store.write_object(NAME, ccm[0], ccm[1], None)
    store.write_object(NAME, sc[0], b"# changed by hand\n", None)
    stale = stale_addons(store, cluster)
    assert [(k, etag is None) for k, _, etag in stale] == [(csi[0], True), (sc[0], False)]
    assert write_addons(store, NAME, stale) == [csi[0], sc[0]]
    assert {k: store.get_object(NAME, k) for k in (ccm[0], csi[0], sc[0])} == dict(render_addons(cluster))
    assert stale_addons(store, cluster) == []  # a second run has nothing to write
    # someone else wrote in between the read and the write: a conflict, not a lost write
    store.write_object(NAME, sc[0], b"# theirs\n", store.read_object(NAME, sc[0]).etag)
    mine = stale_addons(store, cluster)
    store.write_object(NAME, sc[0], b"# theirs again\n", store.read_object(NAME, sc[0]).etag)
    with pytest.raises(WriteConflict):
        write_addons(store, NAME, mine)
