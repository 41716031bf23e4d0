// Linking libarchive statically (see include/carchive.h) takes from libarchive.a only the objects
// whose symbols strata uses. The pax writer calls one helper that libarchive keeps in the object
// holding the table of every write format (archive_write_set_format.o), which would pull in xar,
// 7zip, iso9660 and mtree writers and, through them, libxml2 and nettle. This file gives the helper
// here, with libarchive's behaviour: an entry of a type the format cannot hold is refused with a
// warning naming it. Should a later libarchive need that object for anything else, the link fails
// with a duplicate symbol instead of silently pulling it in.
#include <errno.h>

#include "carchive.h"

int __archive_write_entry_filetype_unsupported(struct archive *a, struct archive_entry *entry,
                                               const char *format) {
    const char *name = NULL;
    switch (archive_entry_filetype(entry)) {
    case AE_IFDIR: name = "directories"; break;
    case AE_IFLNK: name = "symbolic links"; break;
    case AE_IFCHR: name = "character devices"; break;
    case AE_IFBLK: name = "block devices"; break;
    case AE_IFIFO: name = "named pipes"; break;
    case AE_IFSOCK: name = "sockets"; break;
    default: break;
    }
    if (name != NULL)
        archive_set_error(a, EILSEQ, "%s: %s format cannot archive %s",
                          archive_entry_pathname(entry), format, name);
    else
        archive_set_error(a, EILSEQ, "%s: %s format cannot archive files with mode 0%lo",
                          archive_entry_pathname(entry), format, (unsigned long)archive_entry_mode(entry));
    return ARCHIVE_WARN;
}
