use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = pgdw::cli::Cli::parse();
    match pgdw::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
