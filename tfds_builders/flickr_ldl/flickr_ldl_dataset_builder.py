"""Flickr_LDL (Yang, Sun & Sun, AAAI 2017): 11,150 Flickr images with votes of 11 raters over Mikels' eight emotions.

All logic is shared with Twitter_LDL in `tfds_builders/tfds_common.py` (`LdlBuilder`): votes read from the MATLAB v7.3
config file, mapped by emotion name to MIKELS8 order, normalised, and split 80/20 with a fixed seed.
"""
import tfds_common as common


class Builder(common.LdlBuilder):
    """Flickr_LDL emotion distributions."""

    MAT_FILE = "flickrldl_config.mat"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Download Flickr_LDL (images and flickrldl_config.mat) from the authors of Yang, Sun & Sun (AAAI 2017) and arrange:
{common.LDL_LAYOUT.format(mat=MAT_FILE)}
"""
