// libarchive's API as StrataArchive sees it. The library itself is linked statically (Package.swift):
// only the tar, raw and filter code strata calls comes along, not the other formats and the libxml2,
// ICU and nettle they need, whose loading was most of the fixed cost of every command.
#include <archive.h>
#include <archive_entry.h>
