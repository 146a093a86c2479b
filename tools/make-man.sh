#!/bin/sh
# ladle(1) from the commands' own --help texts, so the two never differ.
# usage: tools/make-man.sh path/to/ladle > ladle.1
set -eu
ladle=$1
version=$("$ladle" --version | sed -n 's/^ladle \([^ ]*\).*/\1/p')
# roff: a backslash is \e; a line starting with . or ' would be a request.
quote() { sed -e 's/\\/\\e/g' -e "s/^\([.']\)/\\\\\&\1/"; }
cat <<HEAD
.TH LADLE 1 "" "ladle $version" "User Commands"
.SH NAME
ladle \- weight-space model merging
.SH SYNOPSIS
.B ladle
.I COMMAND
[options]
.SH DESCRIPTION
.nf
HEAD
"$ladle" --help | quote
printf '.fi\n.SH COMMANDS\n'
for cmd in info lerp soup task ckpt slerp nuslerp multislerp karcher nearswap ties dare \
    breadcrumbs della stock sce ram arcee-fusion iso-c iso-cts tsv wudi consensus-ta \
    consensus-ties diff masks merge sweep index lora; do
    printf '.SS ladle %s\n.nf\n' "$cmd"
    "$ladle" "$cmd" --help | quote
    printf '.fi\n'
done
cat <<'TAIL'
.SH EXIT STATUS
0 on success, 1 on an error (one line on stderr: ladle: error: ...), 2 on a
usage error, 130 when interrupted.
.SH SEE ALSO
The README of the ladle repository; the Python package (import ladle).
TAIL
