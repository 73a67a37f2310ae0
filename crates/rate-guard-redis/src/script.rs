//! The Lua scripts: algorithm files and a driver, concatenated into one script each, with
//! their SHA1 computed once.

use std::sync::LazyLock;

/// The files every script starts with: helpers, the algorithms, the module table.
macro_rules! with_algorithms {
    ($driver:literal) => {
        concat!(
            include_str!("../lua/common.lua"),
            include_str!("../lua/fixed_window.lua"),
            include_str!("../lua/sliding_window.lua"),
            include_str!("../lua/token_bucket.lua"),
            include_str!("../lua/sliding_log.lua"),
            include_str!("../lua/modules.lua"),
            include_str!($driver),
        )
    };
}

/// The request script: decides a request's rules together and consumes only if all allow.
/// Its header (`lua/request.lua`) lists KEYS, ARGV and the reply.
pub const REQUEST_SOURCE: &str = with_algorithms!("../lua/request.lua");

/// The refund script: gives back what one slot group of a cluster request consumed when another
/// group denied (`lua/refund.lua`).
pub const REFUND_SOURCE: &str = with_algorithms!("../lua/refund.lua");

/// A script's source and SHA1.
#[derive(Debug)]
pub(crate) struct Script {
    pub(crate) source: &'static str,
    pub(crate) sha: String,
}

impl Script {
    fn new(source: &'static str) -> Self {
        Self {
            source,
            sha: redis::Script::new(source).get_hash().to_owned(),
        }
    }
}

pub(crate) static REQUEST: LazyLock<Script> = LazyLock::new(|| Script::new(REQUEST_SOURCE));
pub(crate) static REFUND: LazyLock<Script> = LazyLock::new(|| Script::new(REFUND_SOURCE));
