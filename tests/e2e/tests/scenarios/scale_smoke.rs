//! The scale benchmark (`tests/e2e/scale.sh`) at the size of a smoke test, so that it cannot
//! rot: a few canaries for ours and for Flagger v1.44.0 side by side, every step of a real run
//! (probes, revisions under load and idle, a short idle window). Its figures are not asserted:
//! both operators share the machine and the API server's counts here; only that every figure
//! was measured.

use std::time::Duration;

use flagger_e2e::Result;
use flagger_e2e::env::Env;
use flagger_e2e::flagger_go;
use flagger_e2e::scale::{self, Implementation, Options};

#[tokio::test]
#[ignore = "needs the processes of tests/e2e/run.sh"]
async fn scale_benchmark_smoke() -> Result<()> {
    let env = Env::from_env()?;
    let opts = Options {
        canaries: 4,
        unrelated: 3,
        window: Duration::from_secs(5),
        revisions: 1,
        implementations: vec![Implementation::Ours, Implementation::Flagger],
        kubeconfig: env.kubeconfig.clone(),
        ours_bin: env.flagger_bin.clone(),
        flagger_bin: Some(flagger_go::binary()?),
        logs: env.logs.join("scale_benchmark_smoke"),
        timeout: Duration::from_secs(120),
        quiesce: false,
    };
    let results = scale::run_side_by_side(&opts).await?;
    let table = scale::report::table(&results);
    println!("{table}");
    assert_eq!(results.len(), 2);
    for (which, f) in &results {
        let name = which.name();
        assert_eq!((f.canaries, f.bulk), (4, 3), "{name}");
        assert!(f.init_s > 0.0, "{name}: no initialization time");
        assert!(
            f.end_rss_mib > 0.0 && f.peak_rss_mib >= f.end_rss_mib,
            "{name}: {f:?}"
        );
        assert!(f.total_cpu_s > 0.0, "{name}: no CPU time read");
        for times in [
            &f.load_noticed_s,
            &f.load_first_step_s,
            &f.idle_noticed_s,
            &f.idle_first_step_s,
        ] {
            assert!(
                times.len() == 1 && times[0].is_finite() && times[0] > 0.0,
                "{name}: {f:?}"
            );
        }
    }
    assert!(table.contains("| Flagger / ours |"), "{table}");
    Ok(())
}
