//! The memory store's key identity: two polynomial hashes modulo the prime `p = 2^61 - 1`,
//! evaluated at two secret points. A key is stored as these 122 bits, not as its string, so a
//! client that could pick a key hashing like another client's would share its quota: the hash
//! has to be collision-resistant against chosen keys, not merely well spread.
//!
//! # The hash
//!
//! A key of `len` bytes is cut into `c = ceil(len / 7)` chunks of 7 bytes, `m_1 .. m_c`
//! (little-endian, the last one zero-padded; each below `2^56 < p`), and hashed under a secret
//! point `r` drawn once per store, uniformly from `1 .. p - 1`:
//!
//! ```text
//! H_r(key) = len + m_1 r + m_2 r^2 + ... + m_c r^c    (mod p)
//! ```
//!
//! # Why two keys cannot be made to collide
//!
//! For two different keys, `H_r(a) - H_r(b)` is a polynomial in `r` that is not zero (different
//! lengths differ in the constant term; equal lengths give the same chunk count and differ in some
//! chunk), of degree at most `c`, so it has at most `c` roots: over the secret `r`, the two collide
//! with probability at most `c / (p - 1)`. The store uses two independent points, so a chosen key
//! shares the identity of a given other key with probability at most `(c / (p - 1))^2`: for the
//! keys [`KeyBuilder`](crate::KeyBuilder) builds (at most ~300 bytes, `c <= 43`) that is below
//! `2^-111`; for this bench's 45-byte keys (`c = 7`) `2^-116`. Against `n` live keys a try
//! succeeds with at most `n` times that (10^6 keys: below `2^-91`). A client learns nothing
//! about `r` from a failed try beyond ruling out the `c^2` pairs of roots of that one difference
//! per live key, so `q` adaptive tries succeed with at most `q` times the same bound. The bound
//! holds for any keys, chosen in advance or adaptively, as long as the points stay secret: the
//! hash values never leave the process (placement in shards and tables is the only trace they
//! leave, through timing of tens of nanoseconds, below the noise of any network path).
//!
//! This is a proven bound, where SipHash-1-3-128 (the previous identity) offers a conjectured one
//! near `2^-128`; it takes about 150 instructions for a 45-byte key where SipHash took 244, and
//! its 14 multiplications are independent where SipHash's rounds are one dependency chain
//! (BENCHMARKS.md, keyed check). Rejected in issue 13: a seeded non-cryptographic hash (foldhash,
//! ahash: fast, but no collision bound under adversarial input, and two seeds of one function
//! share any seed-independent collision); NH (needs 256 bits of output for the same bound, taking
//! entries from 40 to 56 bytes).
//!
//! # Evaluation
//!
//! Products of a chunk (`< 2^56`) and a power of `r` (`< 2^61`) are `< 2^117`, so eight of them
//! and the length add up in a `u128` without reduction: chunks are taken eight at a time (56
//! bytes) against the precomputed `r^1 .. r^8`, every multiplication independent of the others,
//! and the blocks of a longer key are combined by Horner's rule in `r^8`, from the last. One
//! reduction per block; the result is folded once to 64 bits, congruent to `H_r` modulo `p`
//! (unequal values mod `p` stay unequal), which is all an identity needs.

/// The Mersenne prime `2^61 - 1`.
const P: u64 = (1 << 61) - 1;

/// Bytes per chunk: every chunk is below `2^56 < P`.
const CHUNK: usize = 7;

/// Chunks per block: one power of `r` each.
const LANES: usize = 8;

/// Bytes per block.
const BLOCK: usize = CHUNK * LANES;

/// A key hash's secret: the powers `r^1 .. r^8` of two independent points, side by side.
#[derive(Clone)]
pub(super) struct KeyHasher {
    powers: [[u64; 2]; LANES],
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The points are the secret that keeps keys unforgeable: never printed.
        f.write_str("KeyHasher { .. }")
    }
}

/// `x` modulo `P` up to a small multiple of `P`: below `2^61 + 8` for any `x < 2^124`.
#[inline]
fn fold(x: u128) -> u64 {
    let once = (x as u64 & P) + (x >> 61) as u64;
    (once & P) + (once >> 61)
}

/// `x` modulo `P` up to a multiple of `P`, in one step: below `2^64` for any `x < 2^124`.
/// Congruent values may come out unequal (a hash has two forms then, one per input), never the
/// other way round, so this is all an identity needs.
#[inline]
fn fold_once(x: u128) -> u64 {
    (x as u64 & P) + (x >> 61) as u64
}

/// `a * b mod P`, fully reduced.
fn mul_mod(a: u64, b: u64) -> u64 {
    let x = fold(u128::from(a) * u128::from(b));
    if x >= P {
        x - P
    } else {
        x
    }
}

/// The low 7 bytes of a little-endian word: a number below `2^56`.
const LOW_56: u64 = (1 << 56) - 1;

impl KeyHasher {
    /// The hasher at the points `seeds` (any values: each is mapped into `1 .. P - 1`).
    pub(super) fn new(seeds: [u64; 2]) -> Self {
        // `seed mod (P - 1) + 1`: uniform within 2^-58 for a uniform 64-bit seed.
        let points = seeds.map(|s| s % (P - 1) + 1);
        let mut powers = [points; LANES];
        for i in 1..LANES {
            for k in 0..2 {
                powers[i][k] = mul_mod(powers[i - 1][k], points[k]);
            }
        }
        Self { powers }
    }

    /// `(H_r1(data), H_r2(data))`, each congruent to its hash modulo `P`.
    #[inline]
    pub(super) fn hash(&self, data: &[u8]) -> [u64; 2] {
        let sums = if (8..=BLOCK).contains(&data.len()) {
            self.block(data)
        } else {
            self.other(data)
        };
        let len = data.len() as u128;
        // Below 2^124 + 2^64: `fold_once` takes it.
        [fold_once(sums[0] + len), fold_once(sums[1] + len)]
    }

    /// The sums `m_1 r + ... + m_c r^c` of a block of 8 to 56 bytes, under both points.
    #[inline]
    fn block(&self, data: &[u8]) -> [u128; 2] {
        let mut sums = [0u128; 2];
        let mut add = |m: u64, power: &[u64; 2]| {
            let m = u128::from(m);
            sums[0] += m * u128::from(power[0]);
            sums[1] += m * u128::from(power[1]);
        };
        // Every chunk but the last has a whole word from its start within `data`...
        let head = (data.len() - 1) / CHUNK;
        for (i, power) in self.powers.iter().enumerate().take(head) {
            if let Some(word) = data.get(i * CHUNK..i * CHUNK + 8) {
                if let Ok(word) = <[u8; 8]>::try_from(word) {
                    add(u64::from_le_bytes(word) & LOW_56, power);
                }
            }
        }
        // ... and the last is the top of the last word: one load and a shift.
        if let Some(end) = data.last_chunk::<8>() {
            let n = data.len() - head * CHUNK;
            add(u64::from_le_bytes(*end) >> (64 - 8 * n), &self.powers[head]);
        }
        sums
    }

    /// [`block`](Self::block)'s sums for keys of under 8 or over 56 bytes.
    #[cold]
    #[inline(never)]
    fn other(&self, data: &[u8]) -> [u128; 2] {
        // Whole blocks, then a last one of up to 56 bytes (all of a short key), combined by
        // Horner's rule in `r^8` from the last: sum = block + r^8 * sum.
        let (whole, last) = data.split_at(data.len().saturating_sub(1) / BLOCK * BLOCK);
        let mut sums = self.partial(last);
        for block in whole.rchunks_exact(BLOCK) {
            let next = self.block(block);
            for k in 0..2 {
                // Below 2^120 + 2^62 * 2^61 < 2^124, as `fold` needs.
                let high = u128::from(fold(sums[k])) * u128::from(self.powers[LANES - 1][k]);
                sums[k] = next[k] + high;
            }
        }
        sums
    }

    /// The sums of a last block of up to 56 bytes (none for an empty key: only its length
    /// counts).
    fn partial(&self, data: &[u8]) -> [u128; 2] {
        if data.len() >= 8 {
            return self.block(data);
        }
        let mut word = [0u8; 8];
        word[..data.len()].copy_from_slice(data);
        let m = u128::from(u64::from_le_bytes(word));
        [
            m * u128::from(self.powers[0][0]),
            m * u128::from(self.powers[0][1]),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition, evaluated one chunk at a time.
    fn reference(point: u64, data: &[u8]) -> u64 {
        let r = point % (P - 1) + 1;
        let mut power = 1;
        let mut h = data.len() as u64 % P;
        for c in data.chunks(CHUNK) {
            let mut word = [0u8; 8];
            word[..c.len()].copy_from_slice(c);
            power = mul_mod(power, r);
            h = (h + mul_mod(u64::from_le_bytes(word), power)) % P;
        }
        h
    }

    proptest! {
        #[test]
        fn matches_the_definition(k0: u64, k1: u64, data in prop::collection::vec(any::<u8>(), 0..400)) {
            let [a, b] = KeyHasher::new([k0, k1]).hash(&data);
            prop_assert_eq!([a % P, b % P], [reference(k0, &data), reference(k1, &data)]);
        }
    }

    #[test]
    fn extremes_stay_exact() {
        // The largest chunks against the largest points, over several blocks.
        for seed in [P - 2, P - 3, u64::MAX, 0] {
            for len in [0, 1, 7, 8, 55, 56, 57, 112, 113, 1_000] {
                let data = vec![0xff; len];
                let [a, _] = KeyHasher::new([seed, 1]).hash(&data);
                assert_eq!(a % P, reference(seed, &data), "seed {seed}, {len} bytes");
            }
        }
    }

    #[test]
    fn padding_and_length_are_part_of_the_identity() {
        let hasher = KeyHasher::new([0x1234_5678_9abc_def0, 0x0fed_cba9_8765_4321]);
        let id = |s: &[u8]| hasher.hash(s).map(|h| h % P);
        // Trailing zero bytes fill the same chunks: only the length tells these apart.
        assert_ne!(id(b"a"), id(b"a\0"));
        assert_ne!(id(b""), id(b"\0"));
        assert_ne!(id(&[0; 56]), id(&[0; 57]));
        assert_ne!(id(b"ab"), id(b"ba"));
    }
}
