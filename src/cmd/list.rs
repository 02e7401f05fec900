//! List commands (being built).

use super::CmdSpec;

pub static COMMANDS: &[CmdSpec] = &[];
