# main.sh: the command table, help, version and usage errors of `llm`.
. tests/cli/lib.sh

expect "llm --help exits 0" 0 "$LLM" --help
has "$T/out" "--help lists the commands" "^  config "
has "$T/out" "--help mentions help COMMAND" "help COMMAND"
expect "llm -h exits 0" 0 "$LLM" -h
expect "llm help exits 0" 0 "$LLM" help

expect "llm with no command is a usage error" 2 "$LLM"
has "$T/err" "bare llm prints usage on stderr" "usage: llm COMMAND"

expect "llm --version exits 0" 0 "$LLM" --version
has "$T/out" "--version names the version" "^llm [0-9]*\.[0-9]*\.[0-9]*"
has "$T/out" "--version lists the backends" "^backends: cpu"
has "$T/out" "--version reports the CPU" "^cpu: [0-9]* OpenMP threads, OpenBLAS"
if grep -q "^backends: cpu cuda" "$T/out"; then
    # A CUDA build with no GPU says so and still runs.
    if grep -q "^gpus: none" "$T/out"; then
        has "$T/out" "a CUDA build with no GPU falls back to the CPU" "running on the CPU backend"
    else
        has "$T/out" "a CUDA build lists its GPUs" "^gpu 0: "
    fi
    has "$T/out" "a CUDA build reports cuBLAS and NCCL" "cuBLAS [0-9].*NCCL [0-9]"
else
    has "$T/out" "a CPU build says CUDA was not built" "^cuda: not built"
fi

expect "unknown command exits 2" 2 "$LLM" confg
one_line "unknown command: one line"
has "$T/err" "unknown command names it and hints" "unknown command 'confg' (did you mean 'config'?)"
expect "far-off command exits 2" 2 "$LLM" frobnicate
has "$T/err" "far-off command points at --help" "see 'llm --help'"
expect "unknown global option exits 2" 2 "$LLM" --frob
one_line "unknown global option: one line"

expect "llm help CMD shows its help" 0 "$LLM" help ckpt
has "$T/out" "help ckpt is the ckpt usage" "^usage: llm ckpt"
expect "llm CMD --help equals llm help CMD" 0 "$LLM" ckpt --help
expect "llm help of an unknown command exits 2" 2 "$LLM" help nope

expect "unknown flag of a command exits 2" 2 "$LLM" config --frobnicate
one_line "unknown flag: one line"
has "$T/err" "unknown flag names the command and the flag" "^llm config: error: unknown option '--frobnicate'"

if [ -w /dev/full ]; then
    "$LLM" --help >/dev/full 2>"$T/err"; rc=$?
    if [ "$rc" -eq 1 ] && grep -q "cannot write to stdout" "$T/err"; then ok "write error on stdout exits 1 with a message"
    else nok "write error on stdout exits 1 with a message" "rc=$rc" "$(cat "$T/err")"; fi
else
    skip_test "/dev/full is not writable here, cannot simulate a full disk"
fi
