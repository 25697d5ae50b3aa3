//! `fraudgate rescore --from DATE --to DATE`: the decision log's past
//! decisions against today's lists and rules (`crate::rescore`), each
//! change and clawback a JSON line on stdout, the summary on stderr.

use comfy_table::Table;

use super::feeds::parse_time;
use crate::config::Config;
use crate::query::exec::Reader;
use crate::rescore::Rescorer;

pub fn run(config: &Config, from: &str, to: &str) -> Result<(), String> {
    super::require_log(&config.decision_log)?;
    let from = parse_time(from, false)?.as_millisecond();
    // The end of `to`: its last second, inclusive.
    let to = parse_time(to, true)?.as_millisecond() + 1000;
    if to <= from {
        return Err("--to is before --from".into());
    }
    let rescorer = Rescorer::new(config).map_err(|e| e.to_string())?;
    let reader = Reader::new(&config.decision_log);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let sum = rescorer
        .run(&reader, (from, to), &mut out)
        .map_err(|e| e.to_string())?;
    drop(out);
    eprintln!(
        "{} decisions read ({} skipped: IP not kept); today {} would be blocked and {} allowed; \
         {} approved conversions, {} to claw back",
        sum.decisions,
        sum.skipped,
        sum.to_block,
        sum.to_allow,
        sum.conversions_approved,
        sum.clawbacks
    );
    if !sum.clawback_by_affiliate.is_empty() {
        let mut t = Table::new();
        t.set_header(["affiliate_id", "currency", "conversions", "payout"]);
        for (aff, by) in &sum.clawback_by_affiliate {
            for (currency, (n, payout)) in by {
                t.add_row([
                    aff.clone(),
                    currency.clone(),
                    n.to_string(),
                    format!("{payout:.2}"),
                ]);
            }
        }
        eprintln!("{t}");
    }
    Ok(())
}
