/* Torito's LZ4 block decoder, 32-bit, with no stack and no memory of its own: the boot
 * stub's unpacker (boot/src/entry.rs), also assembled alone by boot/pack's tests, which run
 * it against the Rust model (boot/pack/src/lz4.rs, `unpack`) on damaged input.
 *
 * torito_unpack_lz4 start, fail
 *   in:  esi..ebp the block, edi..edx the output; `start` (a memory operand) holds the
 *        output's first address (edi at entry)
 *   out: falls through when the block fills the output exactly; jumps to `fail` when a
 *        length or offset does not fit either buffer, a sum of lengths carries, or the
 *        block ends early. Writes only the output and up to 15 bytes past it (short runs
 *        are copied 16 bytes at a time: boot/src/pack.rs, OVERRUN).
 *   clobbers eax, ebx, ecx, esi, edi.
 *
 * A block is a run of sequences: a token (literal count << 4 | match length - 4; 15 means
 * more length bytes follow, each added, up to one below 255), the literals, then, unless
 * the block ends there, a 16-bit offset back into the output and the match, copied
 * forward so that a short offset repeats. */

/* Copies 16 bytes from esi to edi with four word moves (clobbers ebx): one emulated
 * block under TCG, where each step of a `rep movs` is emulated on its own. */
.macro torito_copy16
    mov (%esi), %ebx
    mov %ebx, (%edi)
    mov 4(%esi), %ebx
    mov %ebx, 4(%edi)
    mov 8(%esi), %ebx
    mov %ebx, 8(%edi)
    mov 12(%esi), %ebx
    mov %ebx, 12(%edi)
.endm

.macro torito_unpack_lz4 start, fail
    /* The fast path, which most sequences take: at least 17 bytes of input and 32 of
     * output left (so the token, up to 14 literals and the offset, then up to 14 + 18
     * bytes of output, fit without further checks), lengths that sit in the token, and
     * an offset of 4 or more. It copies 16 literals and 20 match bytes whatever the
     * lengths (the extra bytes lie inside the output, where later sequences overwrite
     * them, or in its overrun). The input bound keeps a damaged block from being read
     * as sequences past its end, where the checked path would have stopped. Anything
     * else takes the checked path (30) from the token again. */
10: mov %ebp, %ebx
    sub %esi, %ebx
    cmp $17, %ebx
    jb 30f
    mov %edx, %ebx
    sub %edi, %ebx
    cmp $32, %ebx
    jb 30f
    movzbl (%esi), %eax
    cmp $0xf0, %eax
    jae 30f                        /* 15 literals or more */
    mov %eax, %ecx
    and $15, %ecx
    cmp $15, %ecx
    je 30f                         /* a match of 19 bytes or more */
    inc %esi
    shr $4, %eax                   /* eax: literals; ecx: match length - 4 */
    torito_copy16
    add %eax, %esi
    add %eax, %edi
    movzwl (%esi), %ebx            /* offset */
    add $2, %esi
    mov %edi, %eax
    sub \start, %eax               /* bytes written */
    dec %ebx
    cmp %eax, %ebx
    jae \fail                      /* offset - 1 >= written: zero, or before the start */
    inc %ebx
    cmp $4, %ebx
    jb 31f                         /* offset 1 to 3: the checked match copy */
    add $4, %ecx
    mov %esi, %eax
    mov %edi, %esi
    sub %ebx, %esi
    torito_copy16
    mov 16(%esi), %ebx
    mov %ebx, 16(%edi)
    add %ecx, %edi
    mov %eax, %esi
    jmp 10b
31: mov %ecx, %eax
    jmp 32f

    /* The checked path. */
30: cmp %ebp, %esi
    jae \fail                      /* the input ended where a sequence should start */
    movzbl (%esi), %eax            /* token: literal length << 4 | match length - 4 */
    inc %esi
    mov %eax, %ecx
    shr $4, %ecx
    cmp $15, %ecx
    je 11f
12: mov %ebp, %ebx
    sub %esi, %ebx
    cmp %ebx, %ecx
    ja \fail                       /* literals run past the input */
    mov %edx, %ebx
    sub %edi, %ebx
    cmp %ebx, %ecx
    ja \fail                       /* literals run past the output */
    cmp $16, %ecx
    ja 21f
    /* Up to 16 literals (most sequences): copy 16 and step by the count (the packer
     * leaves room past the output, pack.rs OVERRUN). */
    torito_copy16
    add %ecx, %esi
    add %ecx, %edi
22: cmp %ebp, %esi
    je 9f                          /* the last sequence has literals only */
    mov %ebp, %ebx
    sub %esi, %ebx
    cmp $2, %ebx
    jb \fail
    movzwl (%esi), %ebx            /* offset: 1..=bytes already written */
    add $2, %esi
    mov %edi, %ecx
    sub \start, %ecx
    dec %ebx
    cmp %ecx, %ebx
    jae \fail                      /* offset - 1 >= written: zero, or before the start */
    inc %ebx
32: and $15, %eax
    mov %eax, %ecx
    cmp $15, %ecx
    je 13f
14: add $4, %ecx
    jc \fail
    mov %edx, %eax
    sub %edi, %eax
    cmp %eax, %ecx
    ja \fail                       /* the match runs past the output */
    mov %esi, %eax
    mov %edi, %esi
    sub %ebx, %esi                 /* copy forward from offset bytes back */
    cmp $4, %ebx
    jb 23f
    cmp $16, %ecx
    ja 24f
    /* Offset 4 or more, up to 16 bytes: four word moves, each reading only bytes
     * already final, as in the literal case. */
    torito_copy16
    add %ecx, %edi
    mov %eax, %esi
    jmp 10b

11: cmp %ebp, %esi                 /* 15: more length bytes follow, up to one below 255 */
    jae \fail
    movzbl (%esi), %ebx
    inc %esi
    add %ebx, %ecx
    jc \fail
    cmp $255, %ebx
    je 11b
    jmp 12b
21: mov %ecx, %ebx                 /* long literal run: 4 bytes a step, then the rest */
    shr $2, %ecx
    rep movsl
    mov %ebx, %ecx
    and $3, %ecx
    rep movsb
    jmp 22b
13: cmp %ebp, %esi                 /* long match length */
    jae \fail
    movzbl (%esi), %eax
    inc %esi
    add %eax, %ecx
    jc \fail
    cmp $255, %eax
    je 13b
    jmp 14b
24: mov %ecx, %ebx                 /* long match, offset 4 or more: 4 bytes a step */
    shr $2, %ecx
    rep movsl
    mov %ebx, %ecx
    and $3, %ecx
23: rep movsb                      /* offset below 4 repeats what was just written: */
    mov %eax, %esi                 /* byte by byte, forward */
    jmp 10b

9:  cmp %edx, %edi
    jne \fail                      /* fewer bytes than promised */
.endm
