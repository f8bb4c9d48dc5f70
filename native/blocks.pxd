# The memory blocks the book's growing arrays live in: the order pool, the id tables, the ladder,
# the event and fill buffers.
#
# Invariants
# ----------
# - A block is BLOCK_HEAD bytes of header and then the caller's bytes, 64-byte aligned. The
#   header holds the block's mapping size (0: a heap block) and the caller's size.
# - A block under BLOCK_MAPPED bytes lives on the heap (PyMem_Raw*). On Linux a larger one is its
#   own anonymous mapping, a multiple of BLOCK_MAPPED long, advised for transparent huge pages:
#   resizing it moves page tables (mremap), never bytes, pages never touched cost nothing, and a
#   book of a million orders takes a page fault per 2 MiB rather than per 4 KiB. Once mapped, a
#   block stays mapped until freed. (Elsewhere every block lives on the heap.)
# - `block_resize` keeps the block's first min(old, new) bytes and, on failure, returns NULL with
#   the block intact; `block_zeroed` returns zeroed bytes (a fresh mapping already is: no page is
#   touched to zero it); `block_free` takes NULL.
#
# Everything here is `cdef inline` or C: cimported by book.pyx and compiled into its C file.

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    #ifdef __linux__
    #include <sys/mman.h>
    #endif
    #define EXCHANGE_BLOCK_HEAD ((size_t)64)
    #define EXCHANGE_BLOCK_MAPPED ((size_t)2 << 20)

    static inline size_t* exchange_block_head(void* block) {
        return (size_t*)((char*)block - EXCHANGE_BLOCK_HEAD);
    }

    static inline void* exchange_block_mapped(size_t* head, size_t mapped, size_t bytes) {
        head[0] = mapped;
        head[1] = bytes;
        return (char*)head + EXCHANGE_BLOCK_HEAD;
    }

    static void* exchange_block_resize(void* block, size_t bytes) {
        size_t* head = block ? exchange_block_head(block) : NULL;
        size_t mapped = head ? head[0] : 0, old = head ? head[1] : 0;
        if (bytes > SIZE_MAX - 2 * EXCHANGE_BLOCK_MAPPED)
            return NULL;
        size_t total = bytes + EXCHANGE_BLOCK_HEAD;
    #ifdef __linux__
        if (mapped || total >= EXCHANGE_BLOCK_MAPPED) {
            size_t size = (total + EXCHANGE_BLOCK_MAPPED - 1) & ~(EXCHANGE_BLOCK_MAPPED - 1);
            void* p;
            if (mapped)
                p = mremap(head, mapped, size, MREMAP_MAYMOVE);
            else
                p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED)
                return NULL;
            madvise(p, size, MADV_HUGEPAGE);
            if (head && !mapped) {
                memcpy((char*)p + EXCHANGE_BLOCK_HEAD, block, old < bytes ? old : bytes);
                PyMem_RawFree(head);
            }
            return exchange_block_mapped((size_t*)p, size, bytes);
        }
    #endif
        size_t* p = (size_t*)PyMem_RawRealloc(head, total);
        return p ? exchange_block_mapped(p, 0, bytes) : NULL;
    }

    static inline void* exchange_block_zeroed(size_t bytes) {
        void* block = exchange_block_resize(NULL, bytes);
        if (block && !exchange_block_head(block)[0])
            memset(block, 0, bytes);
        return block;
    }

    static inline void exchange_block_free(void* block) {
        if (!block)
            return;
        size_t* head = exchange_block_head(block);
    #ifdef __linux__
        if (head[0]) {
            munmap(head, head[0]);
            return;
        }
    #endif
        PyMem_RawFree(head);
    }
    """
    void* block_resize "exchange_block_resize"(void* block, size_t bytes) nogil
    void* block_zeroed "exchange_block_zeroed"(size_t bytes) nogil
    void block_free "exchange_block_free"(void* block) nogil


cdef inline void* block_new(size_t bytes) noexcept nogil:
    """A new block of ``bytes`` (contents undefined); NULL if out of memory."""
    return block_resize(NULL, bytes)
