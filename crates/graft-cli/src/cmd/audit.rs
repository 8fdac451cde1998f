//! `graft data audit DIR`

use std::io::Write;

use anyhow::Context;

use crate::cli::AuditArgs;

pub fn run(args: AuditArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let (dataset, facts) =
        graft_run::prepare::scan_and_analyze(&args.dir, &crate::terminal::Terminal)?;
    let report = graft_data::audit::build_report(&dataset, &facts, args.near_dup_threshold);
    let elapsed = started.elapsed();

    let json_to_stdout = args.json.as_deref() == Some(std::path::Path::new("-"));
    if json_to_stdout {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        print!("{}", report.to_table(args.show));
        say!(
            "\nAudited {} files in {:.1} s.",
            report.files_found,
            elapsed.as_secs_f64()
        );
    }
    if let Some(path) = args.json.as_ref().filter(|_| !json_to_stdout) {
        let text = serde_json::to_string_pretty(&report)?;
        graft_data::atomic::write_atomic(path, (text + "\n").as_bytes())
            .with_context(|| format!("writing JSON report {}", path.display()))?;
        say!("JSON report: {}", path.display());
    }
    if let Some(path) = &args.plot {
        graft_data::audit::plot_class_counts(&report, path)?;
        if !json_to_stdout {
            say!("Class chart: {}", path.display());
        }
    }
    Ok(())
}
