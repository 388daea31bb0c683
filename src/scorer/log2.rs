//! Go's `math.Log2`, bit for bit: `Frexp` plus the FreeBSD msun `log` polynomial. A libm
//! `log2` differs in the last bits for about a fifth of small-denominator probabilities.

use std::f64::consts::{FRAC_1_SQRT_2, LOG2_E};

/// Go's `math.Frexp`: `x = frac × 2^exp` with `frac` in [0.5, 1).
fn frexp(x: f64) -> (f64, i32) {
    if x == 0.0 || x.is_nan() || x.is_infinite() {
        return (x, 0);
    }
    let (mut x, mut exp) = (x, 0i32);
    if x.abs() < f64::MIN_POSITIVE {
        x *= (1u64 << 52) as f64;
        exp = -52;
    }
    let mut bits = x.to_bits();
    // The biased exponent is 11 bits, so the cast cannot truncate.
    exp += ((bits >> 52) & 0x7ff) as i32 - 1023 + 1;
    bits &= !(0x7ffu64 << 52);
    bits |= 1022u64 << 52;
    (f64::from_bits(bits), exp)
}

/// Go's pure-Go `math.Log` (identical to its amd64 assembly on the tested inputs).
// The constants are spelled exactly as in e_log.c / Go's log.go so they can be checked
// against the source; `msun_constants` pins their bit patterns.
#[allow(clippy::excessive_precision)]
fn log(x: f64) -> f64 {
    const LN2_HI: f64 = 6.93147180369123816490e-01;
    const LN2_LO: f64 = 1.90821492927058770002e-10;
    const L1: f64 = 6.666666666666735130e-01;
    const L2: f64 = 3.999999999940941908e-01;
    const L3: f64 = 2.857142874366239149e-01;
    const L4: f64 = 2.222219843214978396e-01;
    const L5: f64 = 1.818357216161805012e-01;
    const L6: f64 = 1.531383769920937332e-01;
    const L7: f64 = 1.479819860511658591e-01;

    if x.is_nan() || x == f64::INFINITY {
        return x;
    }
    if x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    let (mut f1, mut ki) = frexp(x);
    if f1 < FRAC_1_SQRT_2 {
        f1 *= 2.0;
        ki -= 1;
    }
    let f = f1 - 1.0;
    let k = f64::from(ki);
    let s = f / (2.0 + f);
    let s2 = s * s;
    let s4 = s2 * s2;
    let t1 = s2 * (L1 + s4 * (L3 + s4 * (L5 + s4 * L7)));
    let t2 = s4 * (L2 + s4 * (L4 + s4 * L6));
    let r = t1 + t2;
    let hfsq = 0.5 * f * f;
    k * LN2_HI - ((hfsq - (s * (hfsq + r) + k * LN2_LO)) - f)
}

/// Go's `math.Log2`.
pub(crate) fn log2(x: f64) -> f64 {
    let (frac, exp) = frexp(x);
    // Exact powers of two give an exact answer.
    if frac == 0.5 {
        return f64::from(exp - 1);
    }
    log(frac) * LOG2_E + f64::from(exp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powers_and_specials() {
        assert_eq!(log2(1.0), 0.0);
        assert_eq!(log2(0.25), -2.0);
        assert_eq!(log2(0.0), f64::NEG_INFINITY);
        assert!(log2(-1.0).is_nan());
        assert_eq!(frexp(f64::MIN_POSITIVE / 4.0), (0.5, -1023));
    }

    #[test]
    #[allow(clippy::excessive_precision)]
    fn msun_constants() {
        let bits = [
            (6.93147180369123816490e-01, 0x3fe62e42_fee00000u64),
            (1.90821492927058770002e-10, 0x3dea39ef_35793c76),
            (6.666666666666735130e-01, 0x3fe55555_55555593),
            (3.999999999940941908e-01, 0x3fd99999_9997fa04),
            (2.857142874366239149e-01, 0x3fd24924_94229359),
            (2.222219843214978396e-01, 0x3fcc71c5_1d8e78af),
            (1.818357216161805012e-01, 0x3fc74664_96cb03de),
            (1.531383769920937332e-01, 0x3fc39a09_d078c69f),
            (1.479819860511658591e-01, 0x3fc2f112_df3e5244),
        ];
        for (v, b) in bits {
            assert_eq!(f64::to_bits(v), b, "{v:e}");
        }
        assert_eq!(LOG2_E.to_bits(), 0x3ff71547_652b82fe);
    }

    #[test]
    fn close_to_libm() {
        for b in 1..=400u32 {
            for a in 1..=b {
                let p = f64::from(a) / f64::from(b);
                let (ours, libm) = (log2(p), p.log2());
                assert!((ours - libm).abs() <= 2.0 * f64::EPSILON * libm.abs().max(1.0), "{a}/{b}");
            }
        }
    }
}
