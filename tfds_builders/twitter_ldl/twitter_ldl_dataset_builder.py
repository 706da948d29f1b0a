"""Twitter_LDL (Yang, Sun & Sun, AAAI 2017): 10,045 Twitter images with votes of 8 raters over Mikels' eight emotions.

All logic is shared with Flickr_LDL in `tfds_builders/tfds_common.py` (`LdlBuilder`): votes read from the MATLAB v7.3
config file, mapped by emotion name to MIKELS8 order, normalised, and split 80/20 with a fixed seed.
"""
import tfds_common as common


class Builder(common.LdlBuilder):
    """Twitter_LDL emotion distributions."""

    MAT_FILE = "twitterldl_config.mat"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Download Twitter_LDL (images and twitterldl_config.mat) from the authors of Yang, Sun & Sun (AAAI 2017) and arrange:
{common.LDL_LAYOUT.format(mat=MAT_FILE)}
"""
