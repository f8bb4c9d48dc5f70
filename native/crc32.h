/* The journal's CRC-32, zlib's (the reflected polynomial 0xEDB88320, its register started at
 * and finished with all ones), computed 16 bytes at a time with carry-less multiplication
 * (PCLMULQDQ) where the CPU has it (from 16 bytes on), and by zlib otherwise and for what is
 * left over.
 *
 * Folding (Gopal et al., "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ
 * Instruction", Intel, 2009): four 128-bit lanes are each multiplied by x^(512+64) and x^512
 * modulo the polynomial and added to the next 64 bytes, then folded into one lane (x^(128+64),
 * x^128), then to 64 and 32 bits, and a Barrett reduction gives the 32-bit remainder. The
 * constants are those powers of x, bit-reflected, and the polynomial's quotient mu.
 *
 * Invariant: journal_crc32(buf, len) == zlib's crc32(0, buf, len) for every input, on every CPU
 * (tests/test_framing.py holds both paths to zlib on every length up to 700 bytes, at 16 offsets). */

#ifndef EXCHANGE_CRC32_H
#define EXCHANGE_CRC32_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define EXCHANGE_CRC32_FOLDS 1
#include <immintrin.h>

/* The raw register (not inverted) after ``len`` bytes at ``buf``: len >= 16, a multiple of 16.
 * From 64 bytes on, four lanes fold 64 bytes at a time into one; one lane folds the rest. */
__attribute__((target("pclmul,sse2")))
static uint32_t crc32_folded(uint32_t crc, const unsigned char *buf, size_t len)
{
    const __m128i by_512 = _mm_set_epi64x(0x1c6e41596LL, 0x154442bd4LL);
    const __m128i by_128 = _mm_set_epi64x(0x0ccaa009eLL, 0x1751997d0LL);
    const __m128i by_64 = _mm_set_epi64x(0, 0x163cd6124LL);
    const __m128i barrett = _mm_set_epi64x(0x1f7011641LL, 0x1db710641LL);
    const __m128i low32 = _mm_set_epi32(0, 0, 0, -1);
    __m128i a = _mm_xor_si128(_mm_loadu_si128((const __m128i *)buf), _mm_cvtsi32_si128((int)crc));
    __m128i b, c, d, high, t;
#define FOLD_ONE(next) \
    high = _mm_clmulepi64_si128(a, by_128, 0x11); \
    a = _mm_clmulepi64_si128(a, by_128, 0x00); \
    a = _mm_xor_si128(_mm_xor_si128(a, high), next);
    if (len >= 64) {
        b = _mm_loadu_si128((const __m128i *)(buf + 16));
        c = _mm_loadu_si128((const __m128i *)(buf + 32));
        d = _mm_loadu_si128((const __m128i *)(buf + 48));
        buf += 64;
        len -= 64;
        for (; len >= 64; buf += 64, len -= 64) {
#define FOLD_INTO(lane, at) \
            high = _mm_clmulepi64_si128(lane, by_512, 0x11); \
            lane = _mm_clmulepi64_si128(lane, by_512, 0x00); \
            lane = _mm_xor_si128(_mm_xor_si128(lane, high), _mm_loadu_si128((const __m128i *)(buf + (at))));
            FOLD_INTO(a, 0)
            FOLD_INTO(b, 16)
            FOLD_INTO(c, 32)
            FOLD_INTO(d, 48)
#undef FOLD_INTO
        }
        FOLD_ONE(b)
        FOLD_ONE(c)
        FOLD_ONE(d)
    } else {
        buf += 16;
        len -= 16;
    }
    for (; len >= 16; buf += 16, len -= 16) {
        FOLD_ONE(_mm_loadu_si128((const __m128i *)buf))
    }
#undef FOLD_ONE
    /* 128 bits to 64 (with 32 zero bits appended), then to 32 and a Barrett reduction */
    t = _mm_clmulepi64_si128(by_128, a, 0x01);
    a = _mm_xor_si128(_mm_srli_si128(a, 8), t);
    t = _mm_srli_si128(a, 4);
    a = _mm_clmulepi64_si128(_mm_and_si128(a, low32), by_64, 0x00);
    a = _mm_xor_si128(a, t);
    t = a;
    a = _mm_clmulepi64_si128(_mm_and_si128(a, low32), barrett, 0x10);
    a = _mm_clmulepi64_si128(_mm_and_si128(a, low32), barrett, 0x00);
    a = _mm_xor_si128(a, t);
    return (uint32_t)_mm_cvtsi128_si32(_mm_srli_si128(a, 4));
}

static int crc32_can_fold(void)
{
    static int known = -1;
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse2");
    }
    return known;
}
#else
#define EXCHANGE_CRC32_FOLDS 0
static int crc32_can_fold(void) { return 0; }
#endif

/* zlib's crc32(0, buf, len); folded unless ``fold`` is 0 or the CPU cannot. */
static inline uint32_t journal_crc32_with(const unsigned char *buf, size_t len, int fold)
{
#if EXCHANGE_CRC32_FOLDS
    if (fold && len >= 16 && crc32_can_fold()) {
        size_t folded = len & ~(size_t)15;
        uint32_t raw = crc32_folded(0xffffffffu, buf, folded);
        if (folded == len)
            return ~raw;
        return (uint32_t)crc32(~raw, buf + folded, (uInt)(len - folded));
    }
#endif
    (void)fold;
    return (uint32_t)crc32_z(0, buf, len);
}

static inline uint32_t journal_crc32(const unsigned char *buf, size_t len)
{
    return journal_crc32_with(buf, len, 1);
}

#endif
