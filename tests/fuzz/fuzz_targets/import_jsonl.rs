//! The jsonl import parser (`import::parse_jsonl`): everything `iblueprint import` checks
//! in an export before it writes a byte.
//!
//! Arbitrary bytes must give an error that names the problem (and never quotes a
//! token-shaped string back) or records that form a valid plan. For a valid backup the
//! plan must also be coherent: merging it into a data file that already holds exactly
//! those records adds nothing and conflicts with nothing.
#![no_main]

use iblueprint::domain::base62;
use iblueprint::domain::token::{PREFIX, TOKEN_LEN};
use iblueprint::import::{self, ImportError};
use iblueprint::store::snapshot::Record;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| match import::parse_jsonl(data) {
    Ok(records) => {
        // What `import --merge` reads from the data file: everything but audit events.
        let existing: Vec<Record> = records.iter().filter(|r| !matches!(r, Record::Audit { .. })).cloned().collect();
        let plan = import::plan_merge(records, &existing);
        assert!(plan.conflicts.is_empty(), "a backup conflicts with itself: {:?}", plan.conflicts);
        assert!(plan.add.is_empty(), "merging a backup into itself adds {} records", plan.add.len());
    }
    Err(err) => {
        let message = err.to_string();
        assert!(!message.trim().is_empty(), "an empty error for {err:?}");
        if let ImportError::Line { line, .. } = err {
            assert!(line >= 1, "line numbers start at 1");
        }
        assert!(!quotes_a_token(&message), "the error quotes a token-shaped string: {message}");
    }
});

/// Whether `text` holds `ibp_` followed by the 46 base62 characters of a token.
fn quotes_a_token(text: &str) -> bool {
    text.match_indices(PREFIX).any(|(at, _)| {
        let rest = &text.as_bytes()[at + PREFIX.len()..];
        rest.len() >= TOKEN_LEN - PREFIX.len() && base62::is_base62(&rest[..TOKEN_LEN - PREFIX.len()])
    })
}
