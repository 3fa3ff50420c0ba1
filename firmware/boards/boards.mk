# boards.mk — cross build of one firmware image: a board port + the kernels + the runtime + an app.
#
#   make -C firmware -f boards/boards.mk BOARD=stm32f4|riscv32 OUT=<dir> APP_SRCS="<abs paths>" \
#        [APP_INCLUDES="<dirs>"] [APP_DEFS="-DFOO=1"] [OPT=-O2] [STACK=<bytes>]
#
# → OUT/firmware.elf, OUT/firmware.bin (flash image from the flash origin), OUT/firmware.map.
# Objects live under OUT/obj, one per source (its absolute path mirrored), with dependency files:
# a rerun recompiles only what changed. A change of compiler, flags, defines, include dirs or
# of the source list (recorded in OUT/flags) recompiles everything. One OUT per configuration;
# two makes must not share an OUT at the same time. streamhar.firmware.toolchain.build runs this file.

FW := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)

BOARD ?=
OUT ?=
APP_SRCS ?=
APP_INCLUDES ?=
APP_DEFS ?=
OPT ?= -O2
STACK ?=

ifeq ($(BOARD),stm32f4)
CROSS := arm-none-eabi-
ARCH := -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16
BOARD_DEF := -DBOARD_STM32F4=1
else ifeq ($(BOARD),riscv32)
CROSS := riscv64-unknown-elf-
# GCC 12: -march=rv32imc alone rejects csrr (ISA spec 20191213 moved it to zicsr) and
# rv32imc_zicsr selects no rv32 multilib (a 64-bit libgcc); spec 2.2 keeps csr* in the base ISA.
ARCH := -march=rv32imc -misa-spec=2.2 -mabi=ilp32
BOARD_DEF := -DBOARD_RISCV32=1
else
$(error BOARD must be stm32f4 or riscv32, got '$(BOARD)')
endif
ifeq ($(strip $(OUT)),)
$(error OUT=<dir> is required: the build directory of this image)
endif
ifeq ($(strip $(APP_SRCS)),)
$(error APP_SRCS="<sources>" is required: the app's C files, one of them with main())
endif

comma := ,
CC := $(CROSS)gcc
OBJCOPY := $(CROSS)objcopy
OUT := $(abspath $(OUT))
OBJ := $(OUT)/obj
LDSCRIPT := $(FW)/boards/$(BOARD)/link.ld

BASE_SRCS := $(wildcard $(FW)/boards/$(BOARD)/*.c $(FW)/boards/$(BOARD)/*.S) \
             $(wildcard $(FW)/boards/common/*.c) \
             $(FW)/kernels/har_kernels.c \
             $(sort $(wildcard $(FW)/runtime/*.c))
# An app may list a runtime file too: each source is compiled and linked once.
SRCS := $(BASE_SRCS) $(filter-out $(BASE_SRCS),$(abspath $(APP_SRCS)))
OBJS := $(patsubst %,$(OBJ)%.o,$(SRCS))

# -ffreestanding: no hosted-libc assumptions; -ffunction/data-sections + --gc-sections: only
# what main reaches is linked; -g costs no flash (debug sections are not loaded).
CFLAGS := -std=c99 $(OPT) -g $(ARCH) -Wall -Wextra -Werror -ffreestanding \
          -ffunction-sections -fdata-sections $(BOARD_DEF) \
          -I$(FW)/boards -I$(FW)/kernels -I$(FW)/runtime $(addprefix -I,$(abspath $(APP_INCLUDES))) \
          $(APP_DEFS)
LDFLAGS := $(ARCH) $(OPT) -nostdlib -nostartfiles -T $(LDSCRIPT) -Wl,--gc-sections \
           -Wl,-Map=$(OUT)/firmware.map -Wl,--no-warn-rwx-segments \
           $(if $(strip $(STACK)),-Wl$(comma)--defsym=_stack_size=$(strip $(STACK)))

# Rebuild everything when the command or the set of sources changes: OUT/flags holds the last.
FLAGS_NOW := $(CC) $(CFLAGS) | $(LDFLAGS) | $(SRCS)
$(shell mkdir -p $(OUT))
ifneq ($(file <$(OUT)/flags),$(FLAGS_NOW))
$(file >$(OUT)/flags,$(FLAGS_NOW))
endif

all: $(OUT)/firmware.elf $(OUT)/firmware.bin

$(OUT)/firmware.elf: $(OBJS) $(LDSCRIPT) $(OUT)/flags
	$(CC) $(LDFLAGS) -o $@ $(OBJS) -lgcc

$(OUT)/firmware.bin: $(OUT)/firmware.elf
	$(OBJCOPY) -O binary $< $@

# The string functions must not be compiled into calls to themselves (see common/libc.c).
$(OBJ)$(FW)/boards/common/libc.c.o: CFLAGS += -fno-tree-loop-distribute-patterns

$(OBJ)/%.c.o: /%.c $(OUT)/flags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(OBJ)/%.S.o: /%.S $(OUT)/flags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

-include $(OBJS:.o=.d)

.PHONY: all
