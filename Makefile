# Makefile for llm: `make` builds ./llm (CPU, plus CUDA where nvcc is found),
# `make test` runs every test, `make demo` runs the pipeline on built-in data,
# `make deps` installs the Debian packages we build against.
#   make CUDA=0          skip the CUDA backend       make CUDA_ARCH=sm_80  choose the GPU
#   make SANITIZE=1      ASan + UBSan build (in build/<variant>-asan, ./llm untouched)

# Use both cores by default (override with -jN).
MAKEFLAGS += -j$(shell nproc 2>/dev/null || echo 2)

CC       ?= cc
SANITIZE ?= 0
CUDA     ?= auto
CUDA_ARCH ?= sm_90
CUDA_HOME ?= /usr/local/cuda

NVCC := $(shell command -v nvcc 2>/dev/null || { test -x $(CUDA_HOME)/bin/nvcc && echo $(CUDA_HOME)/bin/nvcc; })
ifeq ($(CUDA),auto)
  CUDA := $(if $(NVCC),1,0)
endif
ifeq ($(CUDA),1)
  ifeq ($(NVCC),)
    $(error CUDA=1 but nvcc was not found (looked on PATH and in $(CUDA_HOME)/bin))
  endif
endif

VARIANT := $(if $(filter 1,$(CUDA)),cuda,cpu)$(if $(filter 1,$(SANITIZE)),-asan,)
BUILD   := build/$(VARIANT)
BIN     := $(BUILD)/llm
# make V=1 shows the full commands.
Q := $(if $(filter 1,$(V)),,@)

CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -Wall -Wextra -Wshadow -Wno-unused-parameter -MMD -MP -fopenmp \
           -D_GNU_SOURCE -Ilib -Ilib/core -I/usr/include/x86_64-linux-gnu/openblas-pthread
LDLIBS  := -lzstd -lcjson -lpcre2-8 -lutf8proc -lz -lopenblas -lm -lpthread -lutil -fopenmp
ifeq ($(SANITIZE),1)
  CFLAGS  += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDLIBS  += -fsanitize=address,undefined
endif

CU_OBJ :=
ifeq ($(CUDA),1)
  CFLAGS += -DLLM_CUDA=1
  # sm_XX machine code plus compute_XX PTX that newer GPUs JIT-compile.
  NVFLAGS := -O2 -std=c++17 -Ilib -Ilib/core \
             -gencode arch=compute_$(CUDA_ARCH:sm_%=%),code=$(CUDA_ARCH) \
             -gencode arch=compute_$(CUDA_ARCH:sm_%=%),code=compute_$(CUDA_ARCH:sm_%=%)
  CU_OBJ := $(patsubst %.cu,$(BUILD)/%.o,$(wildcard kernels/*.cu))
  # cudart is linked statically so the binary runs (CPU only) on machines without a driver.
  LDLIBS += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart_static -lcublasLt -lcublas -lnccl -ldl -lrt -lstdc++
endif

LIB_SRC := $(sort $(shell find lib -name '*.c'))
CMD_SRC := $(sort $(wildcard cmd/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o) $(CU_OBJ)
CMD_OBJ := $(CMD_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(sort $(wildcard tests/unit/test_*.c))
TEST_BIN := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(sort $(wildcard bench/*.c))
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all deps test demo bench clean check-deps
.DEFAULT_GOAL := all

ifeq ($(SANITIZE),1)
all: $(BIN)
else
all: llm
llm: $(BIN)
	@cp $(BIN) .llm.tmp && mv -f .llm.tmp llm
endif

$(BIN): $(CMD_OBJ) $(BUILD)/libllm.a
	$(Q)$(CC) -o $@ $(CMD_OBJ) $(BUILD)/libllm.a $(LDLIBS)
	@echo "built $(BIN): backends: cpu$(if $(filter 1,$(CUDA)), cuda ($(CUDA_ARCH)+PTX),) $(if $(filter 1,$(SANITIZE)),[asan+ubsan],)"

$(BUILD)/libllm.a: $(LIB_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(BUILD)/%.o: %.c | check-deps
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/kernels/%.o: kernels/%.cu | check-deps
	@mkdir -p $(dir $@)
	$(Q)$(NVCC) $(NVFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(wildcard tests/unit/*.h) $(BUILD)/libllm.a
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(BUILD)/libllm.a $(LDLIBS) -lcmocka

# bench/*.c: benchmark programs (run by the bench/*.sh scripts; never by the tests).
$(BUILD)/bench/%: bench/%.c $(BUILD)/libllm.a
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libllm.a $(LDLIBS)

bench: all $(BENCH_BIN)

# Installs what is missing; other targets run the quick header check first.
DEB_PKGS := libzstd-dev libcjson-dev libopenblas-dev libpcre2-dev libutf8proc-dev zlib1g-dev libcmocka-dev
deps:
	@sh tests/deps.sh install $(DEB_PKGS)
check-deps:
	@sh tests/deps.sh check $(DEB_PKGS)

test: all $(TEST_BIN)
	@sh tests/run.sh $(BUILD)

demo: all
	@sh configs/demo.sh $(BIN)

clean:
	rm -rf build llm

-include $(shell find build -name '*.d' 2>/dev/null)
