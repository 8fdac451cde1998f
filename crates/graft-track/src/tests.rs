//! The store end to end on a temporary file.

use std::path::Path;
use std::time::Duration;

use rusqlite::params;

use crate::*;

fn new_run<'a>(store: &Store, name: &'a str, params: &'a Params) -> RunId {
    store
        .start_run(&NewRun {
            experiment: "leaves-training",
            name,
            command: "train",
            run_dir: Path::new("runs/x"),
            dataset_hash: Some("abc123"),
            params,
            tags: &Params::new(),
        })
        .expect("start")
}

fn metric(key: &str, value: f64, step: i64) -> Metric {
    Metric {
        key: key.into(),
        value,
        step,
        time_ms: now_ms(),
    }
}

#[test]
fn a_run_round_trips_and_lists_filters_and_sorts() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("graft.db");
    let store = Store::open(&db).expect("open");
    assert_eq!(
        store.schema_version().expect("version"),
        crate::schema::current()
    );
    let pa: Params = [("seed".to_string(), "1".to_string())].into();
    let pb: Params = [("seed".to_string(), "2".to_string())].into();
    let a = new_run(&store, "a", &pa);
    let b = new_run(&store, "b", &pb);
    store
        .log_metrics(&a, &[metric("val_f1", 0.5, 1), metric("val_f1", 0.8, 2)])
        .expect("metrics");
    store
        .log_metrics(&b, &[metric("val_f1", 0.7, 1), metric("loss", f64::NAN, 1)])
        .expect("metrics");
    store
        .log_artifacts(
            &a,
            &[Artifact {
                path: "report.html".into(),
                bytes: 10,
                sha256: "00".into(),
            }],
        )
        .expect("artifacts");
    store.end_run(&a, Status::Finished, None).expect("end");
    store
        .end_run(&b, Status::Failed, Some("boom"))
        .expect("end");

    let shown = store.run(&a).expect("show");
    assert_eq!(shown.metrics["val_f1"], 0.8, "latest step wins");
    assert_eq!(shown.metric_steps["val_f1"], 2);
    assert_eq!(shown.artifacts.len(), 1);
    assert_eq!(shown.summary.status, Status::Finished);
    assert_eq!(shown.summary.dataset_hash.as_deref(), Some("abc123"));
    assert!(
        !store.run(&b).expect("b").metrics.contains_key("loss"),
        "NaN is not stored"
    );

    let all = store.runs(&Filter::default()).expect("list");
    assert_eq!(all.iter().map(|r| &r.name).collect::<Vec<_>>(), ["b", "a"]);
    let sorted = store
        .runs(&Filter {
            sort: Some("val_f1".into()),
            ..Filter::default()
        })
        .expect("sorted");
    assert_eq!(sorted[0].name, "a");
    let failed = store
        .runs(&Filter {
            status: Some(Status::Failed),
            ..Filter::default()
        })
        .expect("failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].error.as_deref(), Some("boom"));
    let by_param = store
        .runs(&Filter {
            params: vec![("seed".into(), "2".into())],
            ..Filter::default()
        })
        .expect("param");
    assert_eq!(by_param.len(), 1);
    assert_eq!(by_param[0].name, "b");
    let by_data = store
        .runs(&Filter {
            dataset: Some("abc".into()),
            ..Filter::default()
        })
        .expect("dataset");
    assert_eq!(by_data.len(), 2);

    let cmp = compare(&[store.run(&a).expect("a"), store.run(&b).expect("b")]);
    assert_eq!(cmp.params.len(), 1);
    assert_eq!(cmp.params[0].key, "seed");
    assert_eq!(cmp.metrics[0].values, vec![Some(0.8), Some(0.7)]);

    assert_eq!(store.resolve(&a[..6]).expect("prefix"), a);
    assert!(matches!(store.resolve("zz"), Err(TrackError::NoRun(_))));
    store.delete(&b).expect("delete");
    assert_eq!(store.runs(&Filter::default()).expect("list").len(), 1);
    let left: i64 = store
        .conn()
        .query_row(
            "SELECT COUNT(*) FROM metrics WHERE run_id = ?1",
            params![b],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(left, 0, "a deleted run's metrics go with it");
}

#[test]
fn a_run_whose_process_is_gone_is_marked_killed_on_open() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("graft.db");
    let store = Store::open(&db).expect("open");
    let done = new_run(&store, "done", &Params::new());
    store.end_run(&done, Status::Finished, None).expect("end");
    let orphan = new_run(&store, "orphan", &Params::new());
    let mine = new_run(&store, "mine", &Params::new());
    // Hand the orphan to a process that has exited.
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let pid = child.id();
    child.wait().expect("wait");
    store
        .conn()
        .execute(
            "UPDATE runs SET pid = ?2 WHERE id = ?1",
            params![orphan, pid as i64],
        )
        .expect("update");
    drop(store);
    let store = Store::open(&db).expect("reopen");
    assert_eq!(store.status(&orphan).expect("s"), Some(Status::Killed));
    assert_eq!(store.status(&mine).expect("s"), Some(Status::Running));
    assert_eq!(store.status(&done).expect("s"), Some(Status::Finished));
}

#[test]
fn a_newer_schema_is_refused_with_the_fix() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("graft.db");
    drop(Store::open(&db).expect("open"));
    let conn = rusqlite::Connection::open(&db).expect("conn");
    conn.pragma_update(None, "user_version", 99).expect("bump");
    drop(conn);
    let err = Store::open(&db).err().expect("refused");
    assert!(err.to_string().contains("newer graft"), "{err}");
    assert!(matches!(
        Store::open_existing(&tmp.path().join("none.db")),
        Err(TrackError::NoStore(_))
    ));
}

#[test]
fn system_metrics_are_sampled_in_the_background() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("graft.db");
    let store = Store::open(&db).expect("open");
    let run = new_run(&store, "sys", &Params::new());
    let sampler = SystemMetrics::start(&db, run.clone(), Duration::from_millis(100));
    std::thread::sleep(Duration::from_millis(450));
    let samples = sampler.stop();
    assert!(samples >= 3, "{samples} samples");
    let rss = store
        .history(&run, "system/process_memory_rss_megabytes")
        .expect("rss");
    assert_eq!(rss.len(), samples);
    assert!(rss.iter().all(|m| m.value > 1.0), "{rss:?}");
    let cpu = store
        .latest(&run, "system/cpu_utilization_percentage")
        .expect("cpu")
        .expect("sampled");
    assert!((0.0..=100.0).contains(&cpu), "{cpu}");
}

#[test]
fn curves_are_drawn() {
    if graft_data::audit::ensure_font().is_err() {
        panic!("no TrueType font: install fonts-dejavu-core (scripts/test.sh does)");
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("curves.png");
    let a: Vec<Metric> = (1..=5).map(|s| metric("f1", s as f64 / 10.0, s)).collect();
    let b: Vec<Metric> = (1..=3).map(|s| metric("f1", s as f64 / 8.0, s)).collect();
    curves::draw(
        &[curves::Panel {
            metric: "f1".into(),
            curves: vec![
                curves::Curve {
                    label: "a".into(),
                    points: &a,
                },
                curves::Curve {
                    label: "b".into(),
                    points: &b,
                },
            ],
        }],
        &out,
    )
    .expect("draw");
    let img = image_size(&out);
    assert_eq!(img, (460, 400));
}

fn image_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).expect("png");
    // PNG: IHDR width and height, big-endian, at bytes 16..24.
    assert_eq!(&bytes[1..4], b"PNG");
    let w = u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    let h = u32::from_be_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
    (w, h)
}

#[test]
fn a_store_of_schema_1_is_migrated_and_keeps_its_runs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("graft.db");
    {
        // What the first release wrote: migration 1 only, and one run.
        let conn = rusqlite::Connection::open(&db).expect("sqlite");
        conn.execute_batch(crate::schema::MIGRATIONS[0])
            .expect("v1");
        conn.pragma_update(None, "user_version", 1)
            .expect("version");
        conn.execute(
            "INSERT INTO experiments (id, name, created_ms) VALUES (1, 'old-training', 0)",
            [],
        )
        .expect("experiment");
        conn.execute(
            "INSERT INTO runs (id, experiment_id, name, command, run_dir, status, start_ms,
                 graft_version, pid, pid_start) VALUES
                 ('00112233445566778899aabbccddeeff', 1, 'old', 'train', '/r', 'finished', 5,
                  '0.1.0', 1, 1)",
            [],
        )
        .expect("run");
    }
    let store = Store::open(&db).expect("open");
    assert_eq!(
        store.schema_version().expect("version"),
        crate::schema::current()
    );
    let runs = store.runs(&Filter::default()).expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].name, "old");
    assert!(store.models().expect("registry").is_empty());
    assert_eq!(
        store.unsent_runs("http://mlflow:5000").expect("queue"),
        vec!["00112233445566778899aabbccddeeff".to_string()]
    );
}
