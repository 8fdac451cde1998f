//! Kubernetes on paper: the manifests pass Kubernetes' schema, and the pod's command, run
//! here as one pod would, extracts its shard.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::common::{
    cache_with_mobilenet, demo_subset, graft_in, require_ort_library, stderr, stdout,
};
use super::{ok, QUICK};

#[test]
fn k8s_manifests_pass_the_kubernetes_schema_and_their_pod_command_extracts_its_shard() {
    require_ort_library();
    let validate = std::env::var_os("GRAFT_TEST_K8S_VALIDATE").unwrap_or_else(|| {
        panic!(
            "GRAFT_TEST_K8S_VALIDATE is not set: run the tests with scripts/test.sh \
             (scripts/fetch-k8s-validate.sh installs the validator)"
        )
    });
    let tmp = tempfile::tempdir().expect("tmp");
    let cwd = tmp.path();
    let cache = cache_with_mobilenet(cwd);
    demo_subset(&cwd.join("photos"), 2, 10);
    std::fs::write(cwd.join("graft.toml"), QUICK).expect("config");
    let mut args = vec![
        "--no-track",
        "cluster",
        "k8s",
        "extract",
        "photos",
        "--name",
        "k",
    ];
    args.extend([
        "--config",
        "graft.toml",
        "--tasks",
        "3",
        "--image",
        "lab/graft:0.1",
    ]);
    args.extend([
        "--claim",
        "photos-rwx",
        "--cpu",
        "2",
        "--memory",
        "4Gi",
        "--gpus",
        "1",
    ]);
    let o = ok(graft_in(&cache, cwd, &args));
    assert!(
        stdout(&o).contains("kubectl wait --for=condition=complete"),
        "{}",
        stdout(&o)
    );
    let dir = cwd.join("runs/k/cluster/k8s");
    let (extract, collect) = (dir.join("extract-job.yaml"), dir.join("collect-job.yaml"));
    let check = Command::new(&validate)
        .arg("--strict")
        .arg(&extract)
        .arg(&collect)
        .output()
        .expect("kubernetes-validate");
    assert!(
        check.status.success(),
        "{}\n{}",
        stdout(&check),
        stderr(&check)
    );
    let job: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&extract).expect("yaml")).expect("parse");
    assert_eq!(job["spec"]["completionMode"], "Indexed");
    assert_eq!(job["spec"]["completions"], 3);
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "photos-rwx"
    );
    let c = &pod["containers"][0];
    assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], 1);
    // The pod's command, run here as pod 1 would: graft extract of shard 1/3.
    let script = c["command"][2].as_str().expect("script");
    assert!(
        script.contains("--shard \"${JOB_COMPLETION_INDEX}/3\""),
        "{script}"
    );
    let graft_dir = Path::new(env!("CARGO_BIN_EXE_graft"))
        .parent()
        .expect("bin dir");
    let path = format!(
        "{}:{}",
        graft_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new("/bin/sh")
        .args(["-c", script])
        .current_dir(c["workingDir"].as_str().expect("workingDir"))
        .env("JOB_COMPLETION_INDEX", "1")
        .env("GRAFT_CACHE", &cache)
        .env("PATH", path)
        .output()
        .expect("sh");
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("1 owned of 3"), "{}", stdout(&o));
    assert!(cwd.join("runs/k/features/shard-00001.f16").is_file());
    assert!(!cwd.join("runs/k/features/shard-00000.f16").exists());
    let after: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&collect).expect("yaml")).expect("parse");
    let script = after["spec"]["template"]["spec"]["containers"][0]["command"][2]
        .as_str()
        .expect("script");
    assert!(
        script.contains("extract --merge") && script.contains("train --config"),
        "{script}"
    );
}
