//! Settings of `graft train DIR`: defaults, overridden by a TOML file, overridden by flags.
//! The settings themselves are graft-run's ([`Config`]); this adds the flags.

use crate::cli::PipelineArgs;
pub use graft_run::settings::Settings as Config;

/// Defaults ← `--config` file ← flags.
pub trait Resolve: Sized {
    fn resolve(args: &PipelineArgs) -> anyhow::Result<Self>;
}

impl Resolve for Config {
    fn resolve(args: &PipelineArgs) -> anyhow::Result<Config> {
        let mut c = match &args.config {
            Some(path) => Config::read(path)?,
            None => Config::default(),
        };
        if let Some(d) = &args.dir {
            c.data = Some(d.clone());
        }
        if let Some(v) = &args.encoder {
            c.encoder = v.clone();
        }
        args.onnx.apply(&mut c.encoder)?;
        if let Some(v) = &args.name {
            c.name = Some(v.clone());
        }
        if let Some(v) = &args.runs {
            c.runs = v.clone();
        }
        if let Some(v) = &args.ratios {
            c.split.ratios = v.clone();
        }
        if let Some(v) = args.val_from_train {
            c.split.val_from_train = Some(v);
        }
        if let Some(v) = args.seed {
            c.split.seed = v;
            c.heads.seed = v;
        }
        if let Some(v) = &args.heads {
            c.heads.heads = v.clone();
        }
        if let Some(v) = &args.lrs {
            c.heads.lrs = v.clone();
            c.heads.auto_lr = None;
        }
        match args.lr {
            Some(crate::cli::LrArg::Auto(rule)) => c.heads.auto_lr = Some(rule),
            Some(crate::cli::LrArg::Rate(lr)) => {
                c.heads.lrs = vec![lr];
                c.heads.auto_lr = None;
            }
            None => {}
        }
        if let Some(v) = args.epochs {
            c.heads.epochs = v;
        }
        if let Some(v) = &args.balance {
            c.heads.balance = v.clone();
        }
        if let Some(v) = args.backend {
            c.backend = v;
        }
        c.check()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_then_flags() {
        let tmp = tempfile::tempdir().expect("tmp");
        let file = tmp.path().join("graft.toml");
        std::fs::write(
            &file,
            "data = \"photos\"\nencoder = \"efficientnet-lite0\"\n[heads]\nepochs = 3\nlrs = [0.01]\n",
        )
        .expect("write");
        let args = PipelineArgs {
            config: Some(file.clone()),
            epochs: Some(7),
            ..PipelineArgs::default()
        };
        let c = Config::resolve(&args).expect("resolves");
        assert_eq!(c.encoder, "efficientnet-lite0");
        assert_eq!(c.heads.epochs, 7, "flag beats file");
        assert_eq!(c.heads.lrs, vec![0.01], "file beats default");
        assert_eq!(c.heads.patience, 4, "default kept");
        assert_eq!(c.data, Some(tmp.path().join("photos")));
        // Round trip through the saved form.
        let saved = c.to_toml(&tmp.path().join("config.toml")).expect("toml");
        let back: Config = toml::from_str(&saved).expect("parses");
        assert_eq!(back.heads, c.heads);
        // Typos are errors, not silently ignored.
        std::fs::write(&file, "[heads]\nepoch = 3\n").expect("write");
        let err = Config::read(&file).expect_err("unknown key");
        assert!(format!("{err:#}").contains("epoch"), "{err:#}");
    }

    #[test]
    fn lr_auto_from_the_file_or_the_flag_and_a_rate_replaces_it() {
        use graft_train::lr_find::Rule;
        let tmp = tempfile::tempdir().expect("tmp");
        let file = tmp.path().join("graft.toml");
        std::fs::write(&file, "[heads]\nauto_lr = \"valley\"\n").expect("write");
        let from_file = PipelineArgs {
            config: Some(file.clone()),
            ..PipelineArgs::default()
        };
        let c = Config::resolve(&from_file).expect("resolves");
        assert_eq!(c.heads.auto_lr, Some(Rule::Valley));
        let saved = c.to_toml(&tmp.path().join("config.toml")).expect("toml");
        assert!(saved.contains("auto_lr = \"valley\""), "{saved}");
        let rate = PipelineArgs {
            config: Some(file),
            lr: Some("2e-3".parse().expect("rate")),
            ..PipelineArgs::default()
        };
        let c = Config::resolve(&rate).expect("resolves");
        assert_eq!((c.heads.auto_lr, c.heads.lrs.clone()), (None, vec![2e-3]));
        let auto = PipelineArgs {
            lr: Some("auto".parse().expect("auto")),
            ..PipelineArgs::default()
        };
        let c = Config::resolve(&auto).expect("resolves");
        assert_eq!(c.heads.auto_lr, Some(Rule::Steepest));
        let e = "fast".parse::<crate::cli::LrArg>().expect_err("not a rate");
        assert!(e.contains("auto:valley"), "{e}");
    }

    #[test]
    fn encoder_files_and_their_flags() {
        let tmp = tempfile::tempdir().expect("tmp");
        let file = tmp.path().join("graft.toml");
        std::fs::write(&file, "encoder = \"nets/leaf.onnx\"\n").expect("write");
        let args = PipelineArgs {
            config: Some(file.clone()),
            onnx: crate::cli::OnnxArgs {
                output: Some("stage4".into()),
                input_size: Some(256),
                mean: Some(vec![0.5, 0.5, 0.5]),
                ..Default::default()
            },
            val_from_train: Some(15.0),
            ..PipelineArgs::default()
        };
        let c = Config::resolve(&args).expect("resolves");
        let graft_model::Encoder::Onnx(o) = &c.encoder else {
            panic!("a file: {:?}", c.encoder);
        };
        assert_eq!(
            o.onnx,
            tmp.path().join("nets/leaf.onnx"),
            "relative to the file"
        );
        assert_eq!((o.output.as_str(), o.preprocess.size), ("stage4", 256));
        assert_eq!(o.preprocess.mean, [0.5; 3]);
        assert_eq!(
            o.preprocess.std,
            [0.229, 0.224, 0.225],
            "ImageNet's by default"
        );
        assert_eq!(c.split.val_from_train, Some(15.0));
        // Preprocessing flags belong to files; a named encoder's comes with its weights.
        let named = PipelineArgs {
            encoder: Some("mobilenet-v2".parse().expect("name")),
            onnx: crate::cli::OnnxArgs {
                std: Some(vec![0.5, 0.5]),
                ..Default::default()
            },
            ..PipelineArgs::default()
        };
        let e = Config::resolve(&named).expect_err("not for a named encoder");
        assert!(format!("{e:#}").contains("--encoder FILE.onnx"), "{e:#}");
        let bad = PipelineArgs {
            val_from_train: Some(150.0),
            ..PipelineArgs::default()
        };
        let e = Config::resolve(&bad).expect_err("not a percentage");
        assert!(format!("{e:#}").contains("--val-from-train"), "{e:#}");
    }
}
