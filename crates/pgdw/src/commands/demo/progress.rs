//! Progress for the demo's long steps: a bar or spinner on a terminal, plain lines otherwise
//! (indicatif hides itself when stderr is not a terminal, and so would the lines).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress(ProgressBar);

impl Progress {
    /// A bar over `len` items.
    pub fn bar(len: usize) -> Progress {
        let pb = ProgressBar::new(len as u64);
        pb.set_style(
            ProgressStyle::with_template("      {bar:30.cyan/blue} {pos}/{len} {msg} ({elapsed})")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        pb.enable_steady_tick(Duration::from_millis(200));
        Progress(pb)
    }

    /// A spinner for work of unknown length.
    pub fn spinner(msg: &str) -> Progress {
        let pb = ProgressBar::new_spinner();
        pb.set_style(
            ProgressStyle::with_template("      {spinner} {msg} ({elapsed})")
                .expect("a valid template"),
        );
        pb.set_message(msg.to_string());
        pb.enable_steady_tick(Duration::from_millis(120));
        Progress(pb)
    }

    pub fn set_message(&self, msg: &str) {
        self.0.set_message(msg.to_string());
    }

    pub fn inc(&self) {
        self.0.inc(1);
    }

    /// A line that stays above the bar; printed plainly when there is no terminal.
    pub fn println(&self, line: String) {
        if self.0.is_hidden() {
            outln!("{line}");
        } else {
            self.0.println(line);
        }
    }

    pub fn finish(self) {
        self.0.finish_and_clear();
    }
}
