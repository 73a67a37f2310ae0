//! The Lua code: algorithm files and entry points, concatenated into a function library
//! (`FUNCTION LOAD` once, `FCALL` per request: Redis ≥ 7) and into one script per entry point
//! (`EVALSHA`, where functions are refused), with their SHA1 and names computed once.

use std::sync::LazyLock;

/// The files every script and the library start with: helpers, the algorithms, the module
/// table. They only define functions: a library runs them once, a script on every call.
macro_rules! with_algorithms {
    ($($driver:literal),+ ; $entry:literal) => {
        concat!(
            include_str!("../lua/common.lua"),
            include_str!("../lua/fixed_window.lua"),
            include_str!("../lua/sliding_window.lua"),
            include_str!("../lua/token_bucket.lua"),
            include_str!("../lua/sliding_log.lua"),
            include_str!("../lua/modules.lua"),
            $(include_str!($driver),)+
            $entry,
        )
    };
}

/// The request script: decides a request's rules together and consumes only if all allow.
/// Its header (`lua/request.lua`) lists KEYS, ARGV and the reply.
pub(crate) const REQUEST_SOURCE: &str =
    with_algorithms!("../lua/request.lua"; "\nreturn request(KEYS, ARGV)\n");

/// The refund script: gives back what one slot group of a cluster request consumed when another
/// group denied (`lua/refund.lua`).
pub(crate) const REFUND_SOURCE: &str =
    with_algorithms!("../lua/refund.lua"; "\nreturn refund(KEYS, ARGV)\n");

/// The library's code, without its `#!lua` line and registrations (which name it).
const LIBRARY_BODY: &str = with_algorithms!("../lua/request.lua", "../lua/refund.lua"; "");

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
            sha: sha1(source),
        }
    }
}

/// The function library: `rate_guard_<v>` with the functions `rate_guard_request_<v>` and
/// `rate_guard_refund_<v>`, `<v>` being the start of its code's SHA1. Each version has its own
/// names, so processes of two versions sharing a server each call their own code; a version
/// left behind holds a few kilobytes until `FUNCTION DELETE`.
#[derive(Debug)]
pub(crate) struct Library {
    pub(crate) source: String,
    pub(crate) request: String,
    pub(crate) refund: String,
}

impl Library {
    fn new() -> Self {
        let version = &sha1(LIBRARY_BODY)[..16];
        let request = format!("rate_guard_request_{version}");
        let refund = format!("rate_guard_refund_{version}");
        let source = format!(
            "#!lua name=rate_guard_{version}\n{LIBRARY_BODY}\n\
             redis.register_function('{request}', request)\n\
             redis.register_function('{refund}', refund)\n"
        );
        Self {
            source,
            request,
            refund,
        }
    }
}

fn sha1(source: &str) -> String {
    redis::Script::new(source).get_hash().to_owned()
}

pub(crate) static REQUEST: LazyLock<Script> = LazyLock::new(|| Script::new(REQUEST_SOURCE));
pub(crate) static REFUND: LazyLock<Script> = LazyLock::new(|| Script::new(REFUND_SOURCE));
pub(crate) static LIBRARY: LazyLock<Library> = LazyLock::new(Library::new);
