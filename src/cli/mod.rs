//! Command lines of `teleport` and `tctl`.

pub mod configure;
pub mod instructions;
pub mod loadgen;
pub mod local;
pub mod stdio;
pub mod tctl;
pub mod teleport;

use argh::{EarlyExit, FromArgs};

use crate::error::Error;

/// argh takes `--flag value`; people type `--flag=value` too (Teleport's CLI accepts both).
pub fn split_equals(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    for a in args {
        match a.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") && flag.len() > 2 => {
                out.push(flag.to_string());
                out.push(value.to_string());
            }
            _ => out.push(a.clone()),
        }
    }
    out
}

/// Parses a command line; on `--help`, `--version` or a usage error prints and returns the
/// exit code. `-h` is `--help`, as in most tools (and Teleport's).
pub fn parse<T: FromArgs>(prog: &str, args: &[String]) -> Result<T, i32> {
    if args.first().map(String::as_str) == Some("--version") {
        println!("{}", teleport::version_line());
        return Err(0);
    }
    let args: Vec<String> = split_equals(args)
        .into_iter()
        .map(|a| if a == "-h" { "--help".into() } else { a })
        .collect();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    T::from_args(&[prog], &refs).map_err(|EarlyExit { output, status }| match status {
        Ok(()) => {
            println!("{output}");
            0
        }
        Err(()) => {
            eprintln!("{output}");
            eprintln!("Run \"{prog} --help\" for usage.");
            2
        }
    })
}

/// Prints an error the way both commands do, and returns the exit code.
pub fn fail(e: &Error) -> i32 {
    eprintln!("ERROR: {e}");
    1
}

/// Longest cell a table prints; longer ones are cut (JSON output has them whole).
pub const MAX_CELL: usize = 200;

// Escaping for terminals lives with the character rules in `proto`; this path stays.
pub use crate::proto::limits::printable;

/// A left-aligned table with a dashed rule under the header, as tctl prints.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            (0..headers.len())
                .map(|i| r.get(i).map_or(String::new(), |c| printable(c, MAX_CELL)))
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$} ", w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = vec![
        line(headers.iter().map(|h| h.to_string()).collect()),
        line(widths.iter().map(|w| "-".repeat(*w)).collect()),
    ];
    out.extend(rows.into_iter().map(line));
    out.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_long_flags_with_values() {
        let got = split_equals(&["--labels=a=b,c=d".into(), "-o".into(), "x=y".into()]);
        assert_eq!(got, vec!["--labels", "a=b,c=d", "-o", "x=y"]);
    }

    #[test]
    fn table_escapes_control_characters_and_cuts_long_cells() {
        let rows = vec![
            vec![
                "evil\nforged-row 1.2.3.4".into(),
                "\u{1b}[2J\u{202E}".into(),
            ],
            vec!["x".repeat(70_000)],
        ];
        let t = table(&["Host", "Labels"], &rows);
        assert_eq!(t.lines().count(), 4, "{t}");
        assert!(!t.contains('\u{1b}') && !t.contains('\u{202E}'));
        assert!(t.contains("evil\\nforged-row"));
        assert!(t.lines().all(|l| l.chars().count() < 2 * MAX_CELL + 10));
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(&["A", "Long"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A   Long\n--- ----\nxyz 1\n");
    }
}
