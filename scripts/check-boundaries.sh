#!/bin/bash
# The module rules of docs/modules.md that the compiler alone does not keep, checked by grep.
# Prints each breach and exits 1 if there is any.
cd "$(dirname "$0")/.."
status=0
breach() { echo "boundary: $1" >&2; status=1; }

# The C library is imported only by StrataSystem and StrataLauncher: every syscall elsewhere goes
# through StrataSystem's wrappers.
hits=$(grep -rn --include='*.swift' -E '^(@preconcurrency )?import (Glibc|Musl|SwiftGlibc)\b' Sources \
  | grep -v -E '^Sources/(StrataSystem|StrataLauncher)/')
[ -n "$hits" ] && breach "Glibc imported outside StrataSystem/StrataLauncher:
$hits"

# The C shims: CStrata for StrataSystem and StrataLauncher, CLauncher and CSeccomp for
# StrataLauncher, CArchive (libarchive) for StrataArchive only.
check_import() {  # module, allowed directory pattern
  local hits
  hits=$(grep -rn --include='*.swift' -E "^(@preconcurrency )?import $1\b" Sources | grep -v -E "^Sources/($2)/")
  [ -n "$hits" ] && breach "$1 imported outside $2:
$hits"
}
check_import CStrata 'StrataSystem|StrataLauncher'
check_import CLauncher 'StrataLauncher'
check_import CSeccomp 'StrataLauncher'
check_import CArchive 'StrataArchive'
check_import CRootless 'strata'

# Foundation (which re-exports the C library) only where JSONSerialization is needed; every
# other file imports FoundationEssentials or Dispatch.
allowed='^Sources/(strata/JSONContracts|strata/InspectCommand|StrataFormats/ConfigChange|StrataFormats/ConfigEditor)\.swift:'
hits=$(grep -rn --include='*.swift' -E '^(@preconcurrency )?import Foundation\b' Sources | grep -v -E "$allowed")
[ -n "$hits" ] && breach "Foundation imported where FoundationEssentials or Dispatch would do:
$hits"

# The shims' module maps export only their own declarations (no `export *`).
hits=$(grep -ln 'export \*' Sources/*/module.modulemap Sources/*/include/module.modulemap 2>/dev/null)
[ -n "$hits" ] && breach "a C module map re-exports what it imports: $hits"
for t in CStrata CLauncher CArchive CRootless; do
  [ -f "Sources/$t/include/module.modulemap" ] || breach "Sources/$t/include/module.modulemap is missing (the generated one re-exports the C library)"
done

# The library's seams: the database and the launcher's plumbing are `package`, never `public`.
hits=$(grep -n -E '^public (final )?(class|struct|enum) (Metadata|MetadataTransaction|MonitorProcess|LogPipes|SignalRelay|CgroupWarmUp|ContainerCgroups)\b' -r Sources)
[ -n "$hits" ] && breach "internals made public:
$hits"

# The shared test support builds in release: public API only.
hits=$(grep -rn '^@testable import' Tests/StrataTestSupport)
[ -n "$hits" ] && breach "Tests/StrataTestSupport must not use @testable import (release builds compile it):
$hits"

exit $status
