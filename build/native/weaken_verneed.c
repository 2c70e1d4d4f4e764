/* Marks one version requirement of an ELF64 shared library as weak (VER_FLG_WEAK in
 * .gnu.version_r), so the dynamic loader accepts a libstdc++ that lacks that version.
 * Used on TorchSharp's libLibTorchSharp.so, which asks for GLIBCXX_3.4.32 (GCC 13) for one
 * symbol only; see build/fix-libtorchsharp.sh. Usage: weaken_verneed FILE VERSION */
#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s FILE VERSION\n", argv[0]); return 2; }
    FILE *f = fopen(argv[1], "r+b");
    if (!f) { perror(argv[1]); return 1; }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)size);
    if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) { fprintf(stderr, "%s: read failed\n", argv[1]); return 1; }
    Elf64_Ehdr *eh = (Elf64_Ehdr *)buf;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64) {
        fprintf(stderr, "%s: not an ELF64 file\n", argv[1]); return 1;
    }
    Elf64_Shdr *sh = (Elf64_Shdr *)(buf + eh->e_shoff);
    int changed = 0, found = 0;
    for (int i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_GNU_verneed) continue;
        const char *strtab = (const char *)(buf + sh[sh[i].sh_link].sh_offset);
        unsigned char *p = buf + sh[i].sh_offset;
        for (;;) {
            Elf64_Verneed *vn = (Elf64_Verneed *)p;
            unsigned char *a = p + vn->vn_aux;
            for (int j = 0; j < vn->vn_cnt; j++) {
                Elf64_Vernaux *aux = (Elf64_Vernaux *)a;
                if (strcmp(strtab + aux->vna_name, argv[2]) == 0) {
                    found = 1;
                    if (!(aux->vna_flags & VER_FLG_WEAK)) { aux->vna_flags |= VER_FLG_WEAK; changed = 1; }
                }
                if (!aux->vna_next) break;
                a += aux->vna_next;
            }
            if (!vn->vn_next) break;
            p += vn->vn_next;
        }
    }
    if (changed) {
        fseek(f, 0, SEEK_SET);
        if (fwrite(buf, 1, (size_t)size, f) != (size_t)size) { fprintf(stderr, "%s: write failed\n", argv[1]); return 1; }
    }
    fclose(f);
    printf("%s: %s %s\n", argv[1], argv[2], !found ? "not required" : changed ? "marked weak" : "already weak");
    return 0;
}
