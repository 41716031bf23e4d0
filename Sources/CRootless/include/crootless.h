#ifndef CROOTLESS_H
#define CROOTLESS_H

/* A user who is not root runs strata inside a user namespace of their own, kept by a pause
   process (docs/rootless.md). Entered from a constructor, before any thread starts: setns into a
   user namespace is refused to a process with more than one thread. */

/* What went wrong entering the namespace, or NULL (also in STRATA_ROOTLESS_ERROR). */
const char *strata_rootless_error(void);

#endif
