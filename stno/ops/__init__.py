"""Image operations every layer shares: MATLAB bicubic resizing, the papers' PSNR/SSIM, warping.

Plain torch and numpy; nothing of the network, training or entry points.
"""
