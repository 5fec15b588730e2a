//! `headwater-loadtest`: device-fleet simulator and benchmark runner (not built yet).

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "headwater-loadtest: the device-fleet simulator is not implemented yet; \
         it arrives with the loadtest issue"
    );
    ExitCode::from(2)
}
