//! `logfold-afl-seeds DIR [target...]` writes each target's valid inputs to DIR/<target>/seed-N,
//! the starting corpus for AFL++ (all targets when none is named); `--list` prints the names.

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("--list") {
        println!("{}", logfold_afl::TARGETS.join("\n"));
        return;
    }
    let dir = PathBuf::from(
        args.next()
            .expect("usage: logfold-afl-seeds DIR [target...]"),
    );
    let mut names: Vec<String> = args.collect();
    if names.is_empty() {
        names = logfold_afl::TARGETS.iter().map(|s| s.to_string()).collect();
    }
    for name in &names {
        let seeds = logfold_afl::seeds(name);
        assert!(!seeds.is_empty(), "no target named {name}");
        let def = logfold_afl::ledger();
        for (i, seed) in seeds.iter().enumerate() {
            assert!(
                logfold_afl::accepts(name, seed, &def),
                "{name}: seed {i} is not accepted"
            );
        }
        let out = dir.join(name);
        std::fs::create_dir_all(&out).expect("the corpus folder is made");
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(out.join(format!("seed-{i}")), seed).expect("a seed is written");
        }
        println!(
            "{name}: {} seeds, {} bytes",
            seeds.len(),
            seeds.iter().map(Vec::len).sum::<usize>()
        );
    }
}
