//! tokenbroker-gen: writes the man pages and shell completions of `tokenbroker` and
//! `tokenbrokerd` from their clap definitions, for the .deb (scripts/build-deb.sh).
//!
//! Usage: `tokenbroker-gen [OUT_DIR]` (default `target/packaging`). Writes
//!   OUT_DIR/man/tokenbroker.1, tokenbroker-SUBCOMMAND[-SUBCOMMAND].1, tokenbrokerd.1
//!   OUT_DIR/completions/{bash,zsh,fish}/...
//! and prints every file it wrote.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::CommandFactory as _;
use clap_complete::Shell;

/// The commands we ship, by binary name.
fn commands() -> Vec<clap::Command> {
    vec![
        tokenbroker::args::Cli::command(),
        tokenbrokerd::run::Args::command(),
    ]
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokenbroker-gen: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let out = match args.next() {
        None => PathBuf::from("target/packaging"),
        Some(a) if a == "-h" || a == "--help" => {
            println!("usage: tokenbroker-gen [OUT_DIR]   (default target/packaging)");
            return Ok(());
        }
        Some(a) => PathBuf::from(a),
    };
    if args.next().is_some() {
        bail!("one argument at most: the output folder");
    }
    for cmd in commands() {
        write_man(&cmd, &out.join("man"))?;
        write_completions(&cmd, &out.join("completions"))?;
    }
    Ok(())
}

/// One page for the command and one per subcommand, named `PARENT-SUB.1` as git does (clap
/// gives each subcommand that display name when the command is built).
fn write_man(cmd: &clap::Command, dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = cmd.clone().disable_help_subcommand(true);
    cmd.build();
    render_tree(&cmd, dir)
}

fn render_tree(cmd: &clap::Command, dir: &Path) -> anyhow::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone())
        .manual("tokenbroker")
        .source(format!("tokenbroker {}", env!("CARGO_PKG_VERSION")));
    let mut buf = Vec::new();
    man.render(&mut buf)
        .with_context(|| format!("rendering the man page of {}", cmd.get_name()))?;
    let path = dir.join(man.get_filename());
    fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
    println!("{}", path.display());
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        render_tree(sub, dir)?;
    }
    Ok(())
}

/// Completion scripts under the names that bash-completion, zsh and fish look up.
fn write_completions(cmd: &clap::Command, dir: &Path) -> anyhow::Result<()> {
    let bin = cmd.get_name().to_owned();
    for (shell, sub, file) in [
        (Shell::Bash, "bash", bin.clone()),
        (Shell::Zsh, "zsh", format!("_{bin}")),
        (Shell::Fish, "fish", format!("{bin}.fish")),
    ] {
        let d = dir.join(sub);
        fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), &bin, &mut buf);
        let path = d.join(file);
        fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_pages_and_completions() {
        let dir = std::env::temp_dir().join(format!("tokenbroker-gen-test-{}", std::process::id()));
        for cmd in commands() {
            write_man(&cmd, &dir.join("man")).unwrap();
            write_completions(&cmd, &dir.join("completions")).unwrap();
        }
        for f in [
            "man/tokenbroker.1",
            "man/tokenbroker-provider.1",
            "man/tokenbroker-provider-add.1",
            "man/tokenbrokerd.1",
            "completions/bash/tokenbroker",
            "completions/zsh/_tokenbroker",
            "completions/fish/tokenbroker.fish",
            "completions/bash/tokenbrokerd",
        ] {
            let text = fs::read_to_string(dir.join(f)).unwrap();
            assert!(!text.is_empty(), "{f} is empty");
        }
        let page = fs::read_to_string(dir.join("man/tokenbroker-provider-add.1")).unwrap();
        assert!(page.contains("tokenbroker\\-provider\\-add"), "{page}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
