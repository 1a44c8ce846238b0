//! The `otdrift` binary.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    ExitCode::from(otdrift::run(otdrift::cli::Cli::parse()))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        otdrift::cli::Cli::command().debug_assert();
    }

    #[test]
    fn exit_codes_are_the_specs() {
        use otdrift::exit::Exit;
        assert_eq!(Exit::Ok.code(), 0);
        assert_eq!(Exit::Drift.code(), 3);
        assert_eq!(Exit::Rejected.code(), 4);
        assert_eq!(Exit::VerificationFailed.code(), 5);
    }
}
