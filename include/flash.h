/* "espfleet flash": write one image set to many ports in parallel. */
#ifndef ESPF_FLASH_H
#define ESPF_FLASH_H

/* argv[0] is "flash"; returns the exit status (0, 1, 2 or 130). */
int	flash_main(int argc, char **argv);

#endif
