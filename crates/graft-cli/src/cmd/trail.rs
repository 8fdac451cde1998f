//! `graft audit export`: the audit trail of `graft serve` as JSON or CSV.

use crate::cli::AuditExportArgs;

pub fn export(args: AuditExportArgs) -> anyhow::Result<()> {
    let path = match (&args.audit, &args.run) {
        (Some(p), _) => p.clone(),
        (None, Some(run)) => run.join("audit.db"),
        (None, None) => anyhow::bail!("give --run DIR or --audit FILE"),
    };
    if args.field {
        return field(&path, &args);
    }
    let rows = graft_serve::audit::read(&path, args.since)?;
    if args.csv {
        let header = [
            "time_ms",
            "request_id",
            "endpoint",
            "model",
            "version",
            "sha256",
            "key_hash",
            "predicted",
            "probability",
            "confident",
            "top",
            "latency_ms",
            "width",
            "height",
            "mean_r",
            "mean_g",
            "mean_b",
            "std_r",
            "std_g",
            "std_b",
            "brightness",
            "blur",
            "embedding",
            "arm",
            "answered",
        ];
        let lines = rows.iter().map(|r| {
            let s = &r.stats;
            let top: Vec<String> = r.top.iter().map(|(c, p)| format!("{c}:{p}")).collect();
            vec![
                r.time_ms.to_string(),
                r.request_id.clone(),
                r.endpoint.clone(),
                r.model.clone(),
                r.version.clone().unwrap_or_default(),
                r.sha256.clone(),
                r.key_hash.clone().unwrap_or_default(),
                r.predicted.clone(),
                r.probability.to_string(),
                r.confident.to_string(),
                top.join(" "),
                format!("{:.3}", r.latency_ms),
                s.width.to_string(),
                s.height.to_string(),
                s.mean[0].to_string(),
                s.mean[1].to_string(),
                s.mean[2].to_string(),
                s.std[0].to_string(),
                s.std[1].to_string(),
                s.std[2].to_string(),
                s.brightness.to_string(),
                s.blur.to_string(),
                r.embedding
                    .as_ref()
                    .map(|e| e.iter().map(f32::to_string).collect::<Vec<_>>().join(" "))
                    .unwrap_or_default(),
                r.arm.as_str().to_string(),
                r.answered.to_string(),
            ]
        });
        print!("{}", graft_data::table::to_csv(&header, lines)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(())
}

/// `--field`: the web app's device predictions.
fn field(path: &std::path::Path, args: &AuditExportArgs) -> anyhow::Result<()> {
    let rows = graft_serve::audit::field::read(path, args.since)?;
    if !args.csv {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let header = [
        "received_ms",
        "client",
        "seq",
        "made_ms",
        "request_id",
        "key_hash",
        "sha256",
        "predicted",
        "probability",
        "confident",
        "top",
        "latency_ms",
    ];
    let lines = rows.iter().map(|r| {
        let p = &r.prediction;
        let top: Vec<String> = p.top.iter().map(|(c, v)| format!("{c}:{v}")).collect();
        vec![
            r.received_ms.to_string(),
            r.client.clone(),
            p.seq.to_string(),
            p.made_ms.to_string(),
            r.request_id.clone(),
            r.key_hash.clone().unwrap_or_default(),
            p.sha256.clone(),
            p.predicted.clone(),
            p.probability.to_string(),
            p.confident.to_string(),
            top.join(" "),
            format!("{:.3}", p.latency_ms),
        ]
    });
    print!("{}", graft_data::table::to_csv(&header, lines)?);
    Ok(())
}
