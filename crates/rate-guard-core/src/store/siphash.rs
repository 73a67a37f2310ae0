//! SipHash-1-3 with a 128-bit output (Aumasson and Bernstein), keyed: the memory store's key
//! identity. Written out for whole-slice input, which is all the store hashes: it costs about
//! half the instructions of a streaming `Hasher`, and this runs on every check.
//!
//! Why this hash and not a cheaper one (issue 13; measured on the project's 2-core VM, keys of
//! 45 bytes, one hash feeding the next as in a lookup): SipHash-1-3-128 takes 34–49 ns, two
//! randomly seeded foldhash (`quality`) hashes 17–23 ns. The store's promise is that no client
//! can pick a key that shares another's state; SipHash is a PRF, so without the per-store
//! secret a chosen key meets one of `n` live keys with probability `n / 2^128` per try.
//! foldhash's seed guards a table against flooding but comes with no collision bound, and two
//! seeds of one function share any seed-independent collision, so "×2" would not add the 64 bits
//! it seems to. Universal hashes with a proof and fewer serial steps either need twice the
//! output for the bound (NH: 256 bits, which would take entries from 40 to 56 bytes) or cost as
//! much as SipHash without carry-less multiply or AES instructions (a polynomial mod 2^130−5),
//! which this crate, without `unsafe`, does not use. SipHash-1-3-64 twice would cost more than
//! this (the second 64 bits are three of the twelve rounds a 45-byte key takes; a second pass
//! repeats all twelve).
//! governor's keyed store hashes its keys with std's SipHash-1-3-64 as well.

const fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

/// SipHash-1-3-128 of `data` under the key `(k0, k1)`.
pub(super) fn siphash13_128(k0: u64, k1: u64, data: &[u8]) -> [u64; 2] {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d ^ 0xee,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let chunks = data.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let m = u64::from_le_bytes(word);
        v[3] ^= m;
        round(&mut v);
        v[0] ^= m;
    }
    let mut last = (data.len() as u64) << 56;
    if let (Some(end), 1..) = (data.last_chunk::<8>(), tail.len()) {
        // The tail is the top of the input's last eight bytes: one load and a shift instead of a
        // byte loop (keys are rarely shorter than a word).
        last |= u64::from_le_bytes(*end) >> (64 - 8 * tail.len());
    } else {
        for (i, &byte) in tail.iter().enumerate() {
            last |= u64::from(byte) << (8 * i);
        }
    }
    v[3] ^= last;
    round(&mut v);
    v[0] ^= last;
    v[2] ^= 0xee;
    round(&mut v);
    round(&mut v);
    round(&mut v);
    let h1 = v[0] ^ v[1] ^ v[2] ^ v[3];
    v[1] ^= 0xdd;
    round(&mut v);
    round(&mut v);
    round(&mut v);
    [h1, v[0] ^ v[1] ^ v[2] ^ v[3]]
}

#[cfg(test)]
mod tests {
    use super::siphash13_128;
    use proptest::prelude::*;
    use siphasher::sip128::SipHasher13;

    proptest! {
        #[test]
        fn matches_the_reference_implementation(k0: u64, k1: u64, data in prop::collection::vec(any::<u8>(), 0..80)) {
            let reference = SipHasher13::new_with_keys(k0, k1).hash(&data);
            prop_assert_eq!(siphash13_128(k0, k1, &data), [reference.h1, reference.h2]);
        }
    }
}
